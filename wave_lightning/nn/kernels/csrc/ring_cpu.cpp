// The wRNN (tied taps) and LocalRNN (untied taps) recurrence on the CPU, forward and
// hand-written BPTT, the whole time loop in C++.
//
// Layout as in fast_ring.py's step buffers: the states the backward reads are kept (T, C, N, B),
// batch innermost, B a multiple of the vector width (the caller pads). Where the caller wants
// the states (a layer's output), each step is also transposed, while it is in cache, into an
// output (B, T, C, N), batch first and contiguous like torch.nn.GRU(batch_first=True)'s, so
// that whatever the caller does with it runs at contiguous speed; the backward transposes each
// step of the gradient it sends back the same way. The batch is cut into one slice per thread,
// and each thread runs the whole time loop on its slice: sequences are independent, so the
// threads never wait for each other; the weight gradients are summed over the slices at the end.
//
// A step is a register-blocked product: for each ring position, a block of kCB output channels
// times kNV vectors of the batch sits in registers while the K x C taps of the previous state
// (and, forwards, the bias and the input projection V x_t) are added, one broadcast weight and
// one load per row; the activation (or, backwards, the product with its derivative) is applied
// before one store. The backward keeps dz in two rolling step buffers and takes each gradient's
// share of a step while it is in cache: the taps' by blocked vector sums over tiles of ring
// positions, x's by the product with V^T, V's by vector sums (a wide input's by one BLAS
// call), the bias's by vector sums.
// The states' memory is kept for the next call of the same size (StatesCache).
//
// Without V (weight None) x is the drive V x_t + bias itself, (B, T, H), computed by the caller
// in one GEMM (for a wide input, which the per-step product would run far below BLAS's rate);
// each step's tile then starts from the drive's, and the backward returns dz as x's gradient.
//
// Optionally a readout of every step, y_t = W h_t + b (W (O, H)), is fused in: forwards the
// same product on the step just computed, backwards W^T dy_t as one more term of dz_t's
// product and W's gradient by the blocked sums of the taps' (no (T, H, B) gradient exists).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#if __has_include(<sys/mman.h>)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

enum Activation { kRelu = 0, kTanh = 1, kIdentity = 2 };

// One vector register (GCC/Clang vector types): AVX-512's where the build has it (a 512-bit
// FMA does the work of two 256-bit ones in one instruction: 3-24% faster whole steps on a Zen 4
// host), else AVX's.
#ifdef __AVX512F__
constexpr int64_t kBytes = 64;
#else
constexpr int64_t kBytes = 32;
#endif
constexpr int kCB = 6, kNV = 2;   // step product: output channels x vectors in registers
constexpr int kGC = 4, kGR = 3;   // tap gradient: output channels x input rows in registers
constexpr int64_t kTile = 4;      // ring positions per tile of the tap gradient
constexpr int64_t kSumsV = 8192;  // V's gradient by vector sums up to this many (H I) entries

template <typename T>
struct Simd {
  typedef T Vec __attribute__((vector_size(kBytes)));
  static constexpr int64_t W = kBytes / sizeof(T);  // elements per vector
  static Vec load(const T* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, Vec v) { std::memcpy(p, &v, sizeof v); }
  static Vec splat(T s) { return s - Vec{}; }  // a broadcast (Vec{} + s adds: -0 + 0 is +0)
  static T sum(Vec v) {
    T s = 0;
    for (int64_t j = 0; j < W; ++j) s += v[j];
    return s;
  }
};

// v, held in a vector register: an empty asm that must see v in one. Without it GCC folded
// the load of each row of the tap gradient into every FMA that used it (16 loads per 12 FMAs
// instead of 7, load-bound): whole training steps 1.03-1.09x slower.
template <typename V>
inline V in_register(V v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(v));
#endif
  return v;
}

// The W x W block held in v (row r in v[r]) transposed in registers: log2(W) stages, each
// swapping the off-diagonal k x k sub-blocks of every 2k x 2k block by two-source shuffles.
template <typename T>
inline void transpose_block(typename Simd<T>::Vec (&v)[Simd<T>::W]) {
#if defined(__GNUC__) && !defined(__clang__)
  constexpr int64_t W = Simd<T>::W;
  using Index = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Index Mask __attribute__((vector_size(kBytes)));
#pragma GCC unroll 8
  for (int64_t k = W / 2; k >= 1; k /= 2) {
    Mask lo, hi;
#pragma GCC unroll 16
    for (int64_t c = 0; c < W; ++c) {
      lo[c] = (c & k) ? W + (c ^ k) : c;
      hi[c] = (c & k) ? W + c : (c ^ k);
    }
#pragma GCC unroll 16
    for (int64_t r = 0; r < W; ++r) {
      if (r & k) continue;
      const auto a = v[r], b = v[r + k];
      v[r] = __builtin_shuffle(a, b, lo);
      v[r + k] = __builtin_shuffle(a, b, hi);
    }
  }
#else
  constexpr int64_t W = Simd<T>::W;
  for (int64_t r = 0; r < W; ++r) {
    for (int64_t c = r + 1; c < W; ++c) std::swap(v[r][c], v[c][r]);
  }
#endif
}

// out[i os + j] = in[j is + i] for i < rows, j < cols: between a step's tile (rows of the batch
// innermost) and the batch-first states (rows of H), by W x W blocks in registers (the edges
// element by element).
template <typename T>
void transpose(T* out, int64_t os, const T* in, int64_t is, int64_t rows, int64_t cols) {
  using S = Simd<T>;
  constexpr int64_t W = S::W;
  const int64_t full_i = rows / W * W, full_j = cols / W * W;
  for (int64_t j0 = 0; j0 < full_j; j0 += W) {
    for (int64_t i0 = 0; i0 < full_i; i0 += W) {
      typename S::Vec v[W];
#pragma GCC unroll 16
      for (int64_t j = 0; j < W; ++j) v[j] = S::load(in + (j0 + j) * is + i0);
      transpose_block<T>(v);
#pragma GCC unroll 16
      for (int64_t i = 0; i < W; ++i) S::store(out + (i0 + i) * os + j0, v[i]);
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = i < full_i ? full_j : 0; j < cols; ++j) out[i * os + j] = in[j * is + i];
  }
}

// Step t of the batch slice [b0, b1) of a batch-first seq (B, T, F) into the tile (F, B) (rows
// of the batch innermost), and back: the moves between the loop's layout and the caller's.
template <typename T>
void step_to_tile(T* tile, const T* seq, int64_t t, int64_t steps, int64_t F, int64_t B,
                  int64_t b0, int64_t b1) {
  transpose(tile + b0, B, seq + (b0 * steps + t) * F, steps * F, F, b1 - b0);
}

template <typename T>
void tile_to_step(T* seq, const T* tile, int64_t t, int64_t steps, int64_t F, int64_t B,
                  int64_t b0, int64_t b1) {
  transpose(seq + (b0 * steps + t) * F, steps * F, tile + b0, B, b1 - b0, F);
}

// (n + shift) mod N for |shift| < N, without a division.
inline int64_t wrap(int64_t n, int64_t shift, int64_t N) {
  const int64_t m = n + shift;
  return m < 0 ? m + N : (m >= N ? m - N : m);
}

// A sum over rows: sum_r a[r ar + c ac] base[offs[r] + b ...] for output channel c.
template <typename T>
struct Rows {
  const T* base;
  const int64_t* offs;
  int64_t count;
  const T* a;
  int64_t ar, ac;
};

// Where a block of output channels goes: out[c stride + b] = f(init or bias + the rows' sums),
// f the activation (deriv null; tanh excepted, see ring_forward) or the product with
// act'(deriv[c stride + b]).
template <typename T>
struct Target {
  T* out;
  int64_t stride;
  const T* init;      // same layout as out, or null
  const T* bias;      // bias[c bias_c], or null (zero)
  int64_t bias_c;
  const T* deriv;
  int act;
};

template <typename T, int CB, int NV>
inline void accumulate(typename Simd<T>::Vec (&acc)[CB][NV], const Rows<T>& rows, int64_t b) {
  using S = Simd<T>;
  for (int64_t r = 0; r < rows.count; ++r) {
    const T* src = rows.base + rows.offs[r] + b;
    typename S::Vec in[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) in[v] = S::load(src + v * S::W);
    const T* a = rows.a + r * rows.ar;
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) {
      const typename S::Vec w = S::splat(a[c * rows.ac]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[c][v] += w * in[v];
    }
  }
}

// One chunk of NV vectors at batch offset b for CB output channels, all in registers.
template <typename T, int CB, int NV>
inline void chunk(const Target<T>& o, const Rows<T>* terms, int nterms, int64_t b) {
  using S = Simd<T>;
  using Vec = typename S::Vec;
  Vec acc[CB][NV];
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      acc[c][v] = o.init ? S::load(o.init + c * o.stride + b + v * S::W)
                         : S::splat(o.bias ? o.bias[c * o.bias_c] : T(0));
    }
  }
  for (int i = 0; i < nterms; ++i) accumulate<T, CB, NV>(acc, terms[i], b);
  const Vec zero = S::splat(0);
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int64_t at = c * o.stride + b + v * S::W;
      Vec y = acc[c][v];
      // NaN passes as in torch's relu and threshold_backward (a comparison with NaN is false)
      if (o.deriv && o.act == kRelu) {
        y = S::load(o.deriv + at) <= zero ? zero : y;
      } else if (o.deriv && o.act == kTanh) {
        const Vec d = S::load(o.deriv + at);
        y *= S::splat(1) - d * d;
      } else if (!o.deriv && o.act == kRelu) {
        y = y < zero ? zero : y;
      }
      S::store(o.out + at, y);  // forward tanh: applied to the whole step by the caller
    }
  }
}

// All chunks of the batch slice [b0, b1) for CB output channels.
template <typename T, int CB>
void sweep(const Target<T>& o, const Rows<T>* terms, int nterms, int64_t b0, int64_t b1) {
  constexpr int64_t W = Simd<T>::W;
  int64_t b = b0;
  for (; b + kNV * W <= b1; b += kNV * W) chunk<T, CB, kNV>(o, terms, nterms, b);
  for (; b < b1; b += W) chunk<T, CB, 1>(o, terms, nterms, b);
}

// out[c, :] for c < channels in blocks of kCB: o and the terms' weights move by c0 channels.
template <typename T>
void product(const Target<T>& o, const Rows<T>* terms, int nterms, int64_t channels, int64_t b0,
             int64_t b1) {
  constexpr int kMaxTerms = 2;
  TORCH_CHECK(nterms <= kMaxTerms, "ring_cpu: at most ", kMaxTerms, " terms");
  Target<T> block = o;
  Rows<T> moved[kMaxTerms];
  for (int64_t c0 = 0; c0 < channels; c0 += kCB) {
    block.out = o.out + c0 * o.stride;
    block.init = o.init ? o.init + c0 * o.stride : nullptr;
    block.bias = o.bias ? o.bias + c0 * o.bias_c : nullptr;
    block.deriv = o.deriv ? o.deriv + c0 * o.stride : nullptr;
    for (int i = 0; i < nterms; ++i) {
      moved[i] = terms[i];
      moved[i].a = terms[i].a + c0 * terms[i].ac;
    }
    switch (std::min<int64_t>(kCB, channels - c0)) {
      case 6: sweep<T, 6>(block, moved, nterms, b0, b1); break;
      case 5: sweep<T, 5>(block, moved, nterms, b0, b1); break;
      case 4: sweep<T, 4>(block, moved, nterms, b0, b1); break;
      case 3: sweep<T, 3>(block, moved, nterms, b0, b1); break;
      case 2: sweep<T, 2>(block, moved, nterms, b0, b1); break;
      default: sweep<T, 1>(block, moved, nterms, b0, b1);
    }
  }
}

// acc[c][j] += sum over positions [n0, n1) and the slice of dz[c0 + c, n, b] h[row r0 + j, b]
// with the rows of h at position n given by offs[n R + r]: GC x GR vector sums in registers.
template <typename T, int GC, int GR>
void tap_block(typename Simd<T>::Vec* acc_mem, int64_t R, const T* dz, const T* h,
               const int64_t* offs, int64_t c0, int64_t r0, int64_t n0, int64_t n1,
               int64_t NB, int64_t B, int64_t b0, int64_t b1) {
  using S = Simd<T>;
  typename S::Vec acc[GC][GR];
#pragma GCC unroll 8
  for (int c = 0; c < GC; ++c) {
#pragma GCC unroll 8
    for (int j = 0; j < GR; ++j) acc[c][j] = acc_mem[(c0 + c) * R + r0 + j];
  }
  for (int64_t n = n0; n < n1; ++n) {
    const T* g = dz + c0 * NB + n * B;
    const int64_t* o = offs + n * R + r0;
    for (int64_t b = b0; b < b1; b += S::W) {
      typename S::Vec gv[GC];
#pragma GCC unroll 8
      for (int c = 0; c < GC; ++c) gv[c] = in_register(S::load(g + c * NB + b));
#pragma GCC unroll 8
      for (int j = 0; j < GR; ++j) {
        const typename S::Vec hv = in_register(S::load(h + o[j] + b));
#pragma GCC unroll 8
        for (int c = 0; c < GC; ++c) acc[c][j] += gv[c] * hv;
      }
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < GC; ++c) {
#pragma GCC unroll 8
    for (int j = 0; j < GR; ++j) acc_mem[(c0 + c) * R + r0 + j] = acc[c][j];
  }
}

template <typename T, int GC>
void tap_rows(typename Simd<T>::Vec* acc_mem, int64_t R, const T* dz, const T* h,
              const int64_t* offs, int64_t c0, int64_t n0, int64_t n1, int64_t NB, int64_t B,
              int64_t b0, int64_t b1) {
  for (int64_t r0 = 0; r0 < R; r0 += kGR) {
    switch (std::min<int64_t>(kGR, R - r0)) {
#define WL_TAP(GR) \
  tap_block<T, GC, GR>(acc_mem, R, dz, h, offs, c0, r0, n0, n1, NB, B, b0, b1); break
      case 3: WL_TAP(3);
      case 2: WL_TAP(2);
      default: WL_TAP(1);
#undef WL_TAP
    }
  }
}

// acc[c][k C + d] += sum_{n, b in slice} dz[c, n, b] h[d, n + k - p, b]: a step's tap gradient,
// tiled over ring positions so that a tile of dz and h stays in L1 for every block. Untied
// taps (LocalRNN) have one gradient per position: acc[n][c][k C + d], no sum over n.
template <typename T>
void tap_grad(typename Simd<T>::Vec* acc_mem, const T* dz, const T* h, const int64_t* offs,
              int64_t C, int64_t N, int64_t B, int64_t R, bool untied, int64_t b0, int64_t b1) {
  const int64_t tile = untied ? 1 : kTile;
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    const int64_t n1 = std::min(N, n0 + tile);
    typename Simd<T>::Vec* acc = acc_mem + (untied ? n0 * C * R : 0);
    for (int64_t c0 = 0; c0 < C; c0 += kGC) {
      switch (std::min<int64_t>(kGC, C - c0)) {
#define WL_TAP_ROWS(GC) tap_rows<T, GC>(acc, R, dz, h, offs, c0, n0, n1, N * B, B, b0, b1); break
        case 4: WL_TAP_ROWS(4);
        case 3: WL_TAP_ROWS(3);
        case 2: WL_TAP_ROWS(2);
        default: WL_TAP_ROWS(1);
#undef WL_TAP_ROWS
      }
    }
  }
}

// gb[row] += sum dz[row, slice] as vectors, four rows at a time (four independent sums).
template <typename T>
void bias_grad(typename Simd<T>::Vec* gb, const T* dz, int64_t H, int64_t B, int64_t b0,
               int64_t b1) {
  using S = Simd<T>;
  constexpr int64_t kRows = 4;
  int64_t row = 0;
  for (; row + kRows <= H; row += kRows) {
    typename S::Vec s[kRows] = {};
    for (int64_t b = b0; b < b1; b += S::W) {
      for (int64_t m = 0; m < kRows; ++m) s[m] += S::load(dz + (row + m) * B + b);
    }
    for (int64_t m = 0; m < kRows; ++m) gb[row + m] += s[m];
  }
  for (; row < H; ++row) {
    for (int64_t b = b0; b < b1; b += S::W) gb[row] += S::load(dz + row * B + b);
  }
}

// offs[n R + k C + d] = d N B + ((n + k - p) mod N) B: the rows of the taps at position n.
std::vector<int64_t> ring_offsets(int64_t C, int64_t N, int64_t B, int64_t K) {
  const int64_t R = K * C, pad = K / 2;
  std::vector<int64_t> offs(N * R);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t d = 0; d < C; ++d) offs[n * R + k * C + d] = d * N * B + wrap(n, k - pad, N) * B;
    }
  }
  return offs;
}

std::vector<int64_t> strided(int64_t count, int64_t stride) {
  std::vector<int64_t> offs(count);
  for (int64_t r = 0; r < count; ++r) offs[r] = r * stride;
  return offs;
}

// Batch slice boundaries, one slice per thread, each a whole number of vectors.
std::vector<int64_t> slices(int64_t B, int64_t W) {
  const int64_t vectors = B / W;
  const int64_t count = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), vectors));
  std::vector<int64_t> bounds(count + 1);
  for (int64_t s = 0; s <= count; ++s) bounds[s] = W * (vectors * s / count);
  return bounds;
}

// fn(slice, b0, b1) for every slice, the slices in parallel.
template <typename F>
void for_slices(const std::vector<int64_t>& bounds, const F& fn) {
  const int64_t count = static_cast<int64_t>(bounds.size()) - 1;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) fn(s, bounds[s], bounds[s + 1]);
  });
}

// Memory for the states, kept for the next call of the same size. Training allocates states
// of one size every step, and fresh memory must be faulted in and zeroed by the kernel, which
// cost about 40% of the forward at psMNIST scale here (on 4 KiB pages 5x more). So the blocks
// freed last (at most kKeep: the kept states and the batch-first output) are kept and handed
// out again for the same size (a block of another size is freed when one is given back beyond
// kKeep); blocks are 2 MiB aligned and on transparent huge pages. empty_cache() releases them.
class StatesCache {
 public:
  static constexpr size_t kHuge = size_t(2) << 20;
  static constexpr size_t kKeep = 2;

  static StatesCache& get() {
    static auto* cache = new StatesCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->second != bytes) continue;
        void* block = it->first;
        kept_.erase(it);
        return block;
      }
    }
    void* block = std::aligned_alloc(kHuge, bytes);
    TORCH_CHECK(block, "ring_cpu: out of memory allocating ", bytes, " bytes for the states");
#ifdef MADV_HUGEPAGE
    madvise(block, bytes, MADV_HUGEPAGE);
#endif
    return block;
  }

  void give(void* block, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    kept_.emplace_back(block, bytes);
    if (kept_.size() > kKeep) {  // the oldest goes
      std::free(kept_.front().first);
      kept_.erase(kept_.begin());
    }
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& kept : kept_) std::free(kept.first);
    kept_.clear();
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> kept_;
};

torch::Tensor cached_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  size_t bytes = options.dtype().itemsize();
  for (const int64_t size : sizes) bytes *= size;
  constexpr size_t kUnit = StatesCache::kHuge;  // whole huge pages
  bytes = (std::max<size_t>(bytes, 1) + kUnit - 1) / kUnit * kUnit;
  void* block = StatesCache::get().take(bytes);
  return at::from_blob(block, sizes, [bytes](void* p) { StatesCache::get().give(p, bytes); },
                       options);
}

// The taps as the step product reads them: U's tied (K, C, C) or untied (K, N, C, C) taps
// [k][n][c][d], packed as [n][k][d][c] (input row k C + d, output channel c; tied: no n).
torch::Tensor forward_taps(const torch::Tensor& taps) {
  return taps.dim() == 4 ? taps.permute({1, 0, 3, 2}).contiguous()
                         : taps.transpose(1, 2).contiguous();
}

// U^T's taps packed the same way, for rows of the gradient at the forward's offsets: output
// position m, input row k C + c, output channel d holds U[K-1-k][m + k - p][c][d].
torch::Tensor adjoint_taps(const torch::Tensor& taps) {
  const auto flipped = taps.flip(0);
  if (taps.dim() == 3) return flipped.contiguous();
  const int64_t K = taps.size(0), pad = K / 2;
  std::vector<torch::Tensor> shifted;
  for (int64_t k = 0; k < K; ++k) shifted.push_back(flipped[k].roll(pad - k, 0));
  return at::stack(shifted, 1).contiguous();  // (N, K, C, C)
}

// x (B, T, I) as (T, I, B): a step's inputs as rows, the steps transposed in parallel.
torch::Tensor time_major(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), I = x.size(2);
  auto src = x.contiguous();
  auto out = at::empty({T, I, B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "time_major", [&] {
    const scalar_t* in = src.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) step_to_tile(o + t * I * B, in, t, T, I, B, 0, B);
    });
  });
  return out;
}

void check_batch(int64_t B, int64_t W) {
  TORCH_CHECK(B % W == 0, "ring_cpu: the batch (", B, ") must be a multiple of ", W,
              " (the caller pads it)");
}

}  // namespace

// Width in elements to which the caller pads the batch, for this dtype.
int64_t batch_multiple(torch::Tensor x) { return kBytes / x.element_size(); }

// states (B, T, C, N) = act(U h_{t-1} + V x_t + bias); x (B, T, I), h0 (C, N, B), taps (K, C, C);
// without weight and bias, act(U h_{t-1} + x_t) for the drive x (B, T, C N);
// with read_w (O, C N) and read_b (O,) also the readout of every step, (T, O, B); with output,
// the states batch first (B, T, C, N) as well.
std::vector<torch::Tensor> ring_forward(torch::Tensor x, torch::Tensor h0,
                                        std::optional<torch::Tensor> weight,
                                        std::optional<torch::Tensor> bias, torch::Tensor taps,
                                        int64_t act,
                                        std::optional<torch::Tensor> read_w,
                                        std::optional<torch::Tensor> read_b, bool output) {
  const int64_t B = x.size(0), T = x.size(1), I = x.size(2), K = taps.size(0);
  const int64_t C = taps.size(-1), N = h0.size(1), R = K * C, H = C * N, size = H * B;
  const int64_t per_position = taps.dim() == 4 ? R * C : 0;  // untied taps move with n
  check_batch(B, batch_multiple(x));
  const bool drive = !weight;
  auto xt = drive ? x.contiguous() : time_major(x);  // the drive (B, T, H), or (T, I, B)
  auto v = drive ? torch::Tensor() : weight->contiguous(), h = h0.contiguous();
  auto b = drive ? torch::Tensor() : bias->contiguous();
  auto packed = forward_taps(taps);
  auto states = cached_empty({T, C, N, B}, x.options());
  auto out = output ? cached_empty({B, T, C, N}, x.options()) : torch::Tensor();
  const int64_t O = read_w ? read_w->size(0) : 0;
  auto rw = read_w ? read_w->contiguous() : torch::Tensor();
  auto rb = read_b ? read_b->contiguous() : torch::Tensor();
  auto y = read_w ? at::empty({T, O, B}, x.options()) : torch::Tensor();
  const auto offs = ring_offsets(C, N, B, K), x_offs = strided(I, B), rows = strided(C * N, B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ring_forward", [&] {
    scalar_t* s = states.data_ptr<scalar_t>();
    const scalar_t* xs = xt.data_ptr<scalar_t>();
    const scalar_t* vs = drive ? nullptr : v.data_ptr<scalar_t>();
    const scalar_t* bs = drive ? nullptr : b.data_ptr<scalar_t>();
    const scalar_t* w = packed.data_ptr<scalar_t>();
    for_slices(slices(B, Simd<scalar_t>::W), [&](int64_t, int64_t b0, int64_t b1) {
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* prev = t ? s + (t - 1) * size : h.data_ptr<scalar_t>();
        scalar_t* cur = s + t * size;
        if (drive) step_to_tile(cur, xs, t, T, H, B, b0, b1);
        for (int64_t n = 0; n < N; ++n) {
          const Target<scalar_t> o{cur + n * B, N * B, drive ? cur + n * B : nullptr,
                                   drive ? nullptr : bs + n, N, nullptr, static_cast<int>(act)};
          const Rows<scalar_t> ring{prev, offs.data() + n * R, R, w + n * per_position, C, 1};
          const Rows<scalar_t> terms[2] = {
              ring, {xs + t * I * B, x_offs.data(), I, drive ? nullptr : vs + n * I, 1, N * I}};
          product<scalar_t>(o, terms, drive ? 1 : 2, C, b0, b1);
        }
        // ATen's vectorized tanh, once per step (a scalar std::tanh per element cost more
        // than the step's products)
        if (act == kTanh) states[t].narrow(2, b0, b1 - b0).tanh_();
        if (O) {  // y_t = W h_t + b
          const Target<scalar_t> o{y.data_ptr<scalar_t>() + t * O * B, B, nullptr,
                                   rb.data_ptr<scalar_t>(), 1, nullptr, kIdentity};
          const Rows<scalar_t> h_rows{cur, rows.data(), H, rw.data_ptr<scalar_t>(), 1, H};
          product<scalar_t>(o, &h_rows, 1, O, b0, b1);
        }
        if (output) {  // out[b, t] = h_t[:, b]
          tile_to_step(out.data_ptr<scalar_t>(), cur, t, T, H, B, b0, b1);
        }
      }
    });
  });
  return {states, y, out};
}

// Gradients of x, h0 (C, N, B), V, bias, taps, read_w and read_b for grad_states (B, T, C, N)
// (the batch-first output's),
// grad_last (B, C N), the last state's, and grad_y (T, O, B), the fused readout's (each may be
// None: not used by the loss); undefined tensors for those not wanted.
std::vector<torch::Tensor> ring_backward(std::optional<torch::Tensor> grad_states,
                                         std::optional<torch::Tensor> grad_last,
                                         std::optional<torch::Tensor> grad_y,
                                         std::optional<torch::Tensor> read_w, torch::Tensor x,
                                         torch::Tensor h0, std::optional<torch::Tensor> weight,
                                         torch::Tensor states, torch::Tensor taps, int64_t act,
                                         std::vector<bool> wanted) {
  const int64_t T = states.size(0), C = states.size(1), N = states.size(2), B = states.size(3);
  const int64_t K = taps.size(0), I = x.size(2), H = C * N, R = K * C, size = H * B;
  const bool untied = taps.dim() == 4;
  const int64_t per_position = untied ? R * C : 0, positions = untied ? N : 1;
  check_batch(B, batch_multiple(x));
  auto adjoint = adjoint_taps(taps);
  const bool drive = !weight;  // x is the drive: its gradient is dz
  auto xt = wanted[2] ? time_major(x) : torch::Tensor();  // (T, I, B)
  auto v = drive ? torch::Tensor() : weight->contiguous(), h = h0.contiguous();
  auto g = grad_states ? grad_states->contiguous() : torch::Tensor();  // (B, T, H)
  auto later = at::empty({H, B}, states.options()), here = at::empty_like(later);
  auto grad_x_tile = wanted[0] && !drive ? at::empty({I, B}, x.options()) : torch::Tensor();
  auto last = grad_last ? grad_last->t() : torch::Tensor();  // (H, B)
  const int64_t O = grad_y ? grad_y->size(1) : 0;
  auto dy = grad_y ? grad_y->contiguous() : torch::Tensor();
  auto rw = grad_y ? read_w->contiguous() : torch::Tensor();
  const bool want_rw = O && wanted[5], want_rb = O && wanted[6];
  auto grad_x = wanted[0] ? at::empty({B, T, I}, x.options()) : torch::Tensor();
  auto grad_h0 = wanted[1] ? at::empty_like(h) : torch::Tensor();
  const auto bounds = slices(B, batch_multiple(x));
  const int64_t count = static_cast<int64_t>(bounds.size()) - 1;
  // per slice, summed below: the tap gradient [n][c][k C + d] (tied: one n), V's [row, i] and
  // the bias's
  auto grad_taps = at::zeros({count, positions, C, R}, x.options());
  auto grad_v = at::zeros({count, H, I}, x.options()), grad_b = at::zeros({count, H}, x.options());
  auto grad_rw = at::zeros({count, O, H}, x.options()), grad_rb = at::zeros({count, O}, x.options());
  const auto offs = ring_offsets(C, N, B, K), rows = strided(H, B), y_rows = strided(O, B);
  const auto x_offs = strided(I, B);
  // a narrow input's V gradient is a few dot products per row: BLAS calls of (H x slice) @
  // (slice x I) ran at a tenth of the vector sums' rate there (I 1-10)
  const bool v_by_sums = wanted[2] && H * I <= kSumsV;
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "ring_backward", [&] {
    using S = Simd<scalar_t>;
    const scalar_t* s = states.data_ptr<scalar_t>();
    const scalar_t* u = adjoint.data_ptr<scalar_t>();
    const scalar_t* vs = drive ? nullptr : v.data_ptr<scalar_t>();
    for_slices(bounds, [&](int64_t slice, int64_t b0, int64_t b1) {
      std::vector<typename S::Vec> acc_taps(wanted[4] ? positions * C * R : 0);
      std::vector<typename S::Vec> acc_b(wanted[3] ? H : 0);
      std::vector<typename S::Vec> acc_rw(want_rw ? O * H : 0), acc_rb(want_rb ? O : 0);
      std::vector<typename S::Vec> acc_v(v_by_sums ? H * I : 0);
      torch::Tensor next_buffer = later.narrow(1, b0, b1 - b0);
      torch::Tensor buffer = here.narrow(1, b0, b1 - b0);
      scalar_t *next = later.data_ptr<scalar_t>(), *dz = here.data_ptr<scalar_t>();
      for (int64_t t = T - 1; t >= 0; --t) {
        // g_t's tile; with no gradient of the states (a last-state loss) g_t is zero but at
        // the last step
        const bool at_last = last.defined() && t == T - 1, given = grad_states || at_last;
        const scalar_t* dy_t = O ? dy.data_ptr<scalar_t>() + t * O * B : nullptr;
        if (grad_states) {
          step_to_tile(dz, g.data_ptr<scalar_t>(), t, T, H, B, b0, b1);
          if (at_last) buffer.add_(last.narrow(1, b0, b1 - b0));
        } else if (at_last) {
          buffer.copy_(last.narrow(1, b0, b1 - b0));
        }
        const scalar_t *h_t = s + t * size, *prev = t ? h_t - size : h.data_ptr<scalar_t>();
        for (int64_t n = 0; n < N; ++n) {  // dz_t = (g_t + U^T dz_{t+1}) act'(h_t)
          const int64_t at = n * B;
          const Target<scalar_t> o{dz + at, N * B, given ? dz + at : nullptr, nullptr, 0,
                                   h_t + at, static_cast<int>(act)};
          const Rows<scalar_t> ring{next, offs.data() + n * R, R, u + n * per_position, C, 1};
          // W^T dy_t at position n: W[o, c N + n] for output o, channel c
          const Rows<scalar_t> read{dy_t, y_rows.data(), O, O ? rw.data_ptr<scalar_t>() + n : nullptr,
                                    H, N};
          const Rows<scalar_t> terms[2] = {t + 1 < T ? ring : read, read};
          product<scalar_t>(o, terms, (t + 1 < T) + (O > 0), C, b0, b1);
        }
        if (want_rw) {  // W's: sum_b dy_t[o, b] h_t[row, b], blocked like the taps'
          tap_grad(acc_rw.data(), dy_t, h_t, rows.data(), O, 1, B, H, false, b0, b1);
        }
        if (want_rb) bias_grad(acc_rb.data(), dy_t, O, B, b0, b1);
        if (wanted[4]) {
          tap_grad(acc_taps.data(), dz, prev, offs.data(), C, N, B, R, untied, b0, b1);
        }
        if (wanted[0]) {  // grad x_t: the drive's is dz itself, else V^T dz; batch first
          const scalar_t* grad = dz;
          if (!drive) {  // grad x_t[i, :] = sum_row V[row, i] dz[row, :]
            scalar_t* tile = grad_x_tile.data_ptr<scalar_t>();
            const Target<scalar_t> o{tile, B, nullptr, nullptr, 0, nullptr, kIdentity};
            const Rows<scalar_t> dz_rows{dz, rows.data(), H, vs, I, 1};
            product<scalar_t>(o, &dz_rows, 1, I, b0, b1);
            grad = tile;
          }
          tile_to_step(grad_x.data_ptr<scalar_t>(), grad, t, T, I, B, b0, b1);
        }
        if (v_by_sums) {  // V's: sum_b dz[row, b] x_t[i, b], blocked like the taps'
          tap_grad(acc_v.data(), dz, xt.data_ptr<scalar_t>() + t * I * B, x_offs.data(), H, 1, B, I,
                   false, b0, b1);
        } else if (wanted[2]) {  // a wide input: (H x slice) @ (slice x I), BLAS on this thread
          grad_v[slice].addmm_(buffer, xt[t].narrow(1, b0, b1 - b0).t());
        }
        if (wanted[3]) bias_grad(acc_b.data(), dz, H, B, b0, b1);
        std::swap(next, dz);
        std::swap(next_buffer, buffer);
      }
      if (wanted[1]) {  // grad h0 = U^T dz_0
        for (int64_t n = 0; n < N; ++n) {
          const Target<scalar_t> o{grad_h0.data_ptr<scalar_t>() + n * B, N * B, nullptr, nullptr,
                                   0, nullptr, kIdentity};
          const Rows<scalar_t> ring{next, offs.data() + n * R, R, u + n * per_position, C, 1};
          product<scalar_t>(o, &ring, 1, C, b0, b1);
        }
      }
      auto reduce = [](const std::vector<typename S::Vec>& acc, scalar_t* out) {
        for (size_t j = 0; j < acc.size(); ++j) out[j] = S::sum(acc[j]);
      };
      reduce(acc_taps, grad_taps[slice].data_ptr<scalar_t>());
      reduce(acc_b, grad_b[slice].data_ptr<scalar_t>());
      reduce(acc_rw, grad_rw[slice].data_ptr<scalar_t>());
      if (v_by_sums) reduce(acc_v, grad_v[slice].data_ptr<scalar_t>());
      reduce(acc_rb, grad_rb[slice].data_ptr<scalar_t>());
    });
  });
  return {
      grad_x,  // (B, T, I), or undefined
      grad_h0,
      wanted[2] ? grad_v.sum(0) : torch::Tensor(),
      wanted[3] ? grad_b.sum(0) : torch::Tensor(),
      wanted[4] ? grad_taps.sum(0)
                      .view({positions, C, K, C})
                      .permute({2, 0, 1, 3})
                      .reshape(taps.sizes())
                      .contiguous()
                : torch::Tensor(),
      want_rw ? grad_rw.sum(0) : torch::Tensor(),
      want_rb ? grad_rb.sum(0) : torch::Tensor(),
  };
}

// Free the states' memory kept for the next call.
void empty_cache() { StatesCache::get().clear(); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("empty_cache", &empty_cache, "free the states' memory kept for the next call");
  m.def("batch_multiple", &batch_multiple, "batch padding multiple for x's dtype");
  m.def("forward", &ring_forward, "wRNN recurrence forward (CPU)");
  m.def("backward", &ring_backward, "wRNN recurrence BPTT (CPU)");
}
