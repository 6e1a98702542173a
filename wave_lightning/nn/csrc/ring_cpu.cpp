// The wRNN recurrence on the CPU, forward and hand-written BPTT, the whole time loop in C++.
//
// Layout as in fast_ring.py: states (T, C, N, B), batch innermost. A step is one fused pass over
// (ring position, channel, batch chunk) that keeps a chunk of the new state in registers while
// it adds the bias, the input projection V x_t and the K x C taps of the previous state, then
// applies the activation (forward) or multiplies by its derivative (backward) before one store.
// The backward keeps dz in two rolling step buffers and takes every gradient's share of a step
// while it is in cache: the taps' by register-blocked dot products, x's and V's by one small
// GEMM each, the bias's by one sum.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

enum Activation { kRelu = 0, kTanh = 1, kIdentity = 2 };

// (n + shift) mod N for |shift| < N, without a division (an idiv per chunk cost more than its
// arithmetic).
inline int64_t wrap(int64_t n, int64_t shift, int64_t N) {
  const int64_t m = n + shift;
  return m < 0 ? m + N : (m >= N ? m - N : m);
}

// 32-byte GCC/Clang vectors (AVX registers where there are some); a chunk of the batch is a
// few of them, held in accumulators that stay in registers as independent FMA chains.
template <typename T>
struct Chunk {
  typedef T Vec __attribute__((vector_size(32)));
  static constexpr int64_t width = 32 / sizeof(T);  // elements of one vector
  static Vec load(const T* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, Vec v) { std::memcpy(p, &v, sizeof v); }
};

// dst[:width] = f(dst[:width]): the activation, or the product with act'(deriv) backwards;
// one loop per case so that each vectorizes. NaN passes through as in torch's relu and
// threshold_backward (a comparison with NaN is false).
template <typename T>
inline void finish(T* dst, const T* deriv, int64_t width, int act) {
  if (deriv && act == kRelu) {
    for (int64_t j = 0; j < width; ++j) dst[j] = deriv[j] <= T(0) ? T(0) : dst[j];
  } else if (deriv && act == kTanh) {
    for (int64_t j = 0; j < width; ++j) dst[j] *= T(1) - deriv[j] * deriv[j];
  } else if (!deriv && act == kRelu) {
    for (int64_t j = 0; j < width; ++j) dst[j] = dst[j] < T(0) ? T(0) : dst[j];
  } else if (!deriv && act == kTanh) {
    for (int64_t j = 0; j < width; ++j) dst[j] = std::tanh(dst[j]);
  }
}

// NV vectors of a conv_step row before f: bias + base + sum_i v[i] x[i, :] +
// sum_{k, d} w[k, c, d] in[d, n + k - p, :], in NV accumulators that stay in registers.
template <typename T, int NV>
inline void conv_vectors(T* dst, const T* base, T bias, const T* v, const T* x, int64_t I,
                         const T* in, const T* w, int64_t C, int64_t N, int64_t B, int64_t K,
                         int64_t n) {
  using Ops = Chunk<T>;
  constexpr int64_t W = Ops::width;
  typename Ops::Vec acc[NV] = {};
  for (int q = 0; q < NV; ++q) acc[q] = (base ? Ops::load(base + q * W) : acc[q]) + bias;
  auto add = [&](T weight, const T* src) {
    for (int q = 0; q < NV; ++q) acc[q] += weight * Ops::load(src + q * W);
  };
  for (int64_t i = 0; i < I; ++i) add(v[i], x + i * B);
  if (in) {
    const int64_t pad = K / 2;
    for (int64_t k = 0; k < K; ++k) {
      const T* taps = w + k * C * C;
      const T* rows = in + wrap(n, k - pad, N) * B;
      for (int64_t d = 0; d < C; ++d) add(taps[d], rows + d * N * B);
    }
  }
  for (int q = 0; q < NV; ++q) Ops::store(dst + q * W, acc[q]);
}

// The same for the last, partial chunk of `width` batch elements, element by element.
template <typename T>
inline void conv_tail(int64_t width, T* dst, const T* base, T bias, const T* v, const T* x,
                      int64_t I, const T* in, const T* w, int64_t C, int64_t N, int64_t B,
                      int64_t K, int64_t n) {
  for (int64_t j = 0; j < width; ++j) dst[j] = base ? base[j] + bias : bias;
  for (int64_t i = 0; i < I; ++i) {
    for (int64_t j = 0; j < width; ++j) dst[j] += v[i] * x[i * B + j];
  }
  if (!in) return;
  const int64_t pad = K / 2;
  for (int64_t k = 0; k < K; ++k) {
    const T* rows = in + wrap(n, k - pad, N) * B;
    for (int64_t d = 0; d < C; ++d) {
      for (int64_t j = 0; j < width; ++j) dst[j] += w[k * C * C + d] * rows[d * N * B + j];
    }
  }
}

// out[c, n, :] = f(base[c, n, :] + bias[c N + n] + sum_i v[c N + n, i] x[i, :]
//                  + sum_{k, d} w[k, c, d] in[d, n + k - p, :])
// with f the activation (deriv == nullptr) or the product with act'(deriv[c, n, :]).
// base, bias, v (with x, I) and in may be null (zero). Rows are (C, N, B) contiguous.
template <typename T>
void conv_step(T* out, const T* base, const T* bias, const T* v, const T* x, int64_t I,
               const T* in, const T* w, const T* deriv, int act, int64_t C, int64_t N,
               int64_t B, int64_t K) {
  const int64_t work = B * (C * K + I) + 1;
  at::parallel_for(0, C * N, std::max<int64_t>(1, 32768 / work), [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      // ring position outermost: the K C input rows around it are read by every channel
      const int64_t n = index / C, c = index % C, row = c * N + n;
      const T b_row = bias ? bias[row] : T(0);
      const T* v_row = v ? v + row * I : nullptr;
      const int64_t inputs = v ? I : 0;
      const T* w_row = w + c * C;
      constexpr int64_t W = Chunk<T>::width, kWide = 4;  // vectors per chunk
      for (int64_t b0 = 0; b0 < B;) {
        const int64_t at = row * B + b0;
        const T* base_at = base ? base + at : nullptr;
        const T* x_at = x ? x + b0 : nullptr;
        const T* in_at = in ? in + b0 : nullptr;
        int64_t width = kWide * W;
        if (b0 + width <= B) {
          conv_vectors<T, kWide>(out + at, base_at, b_row, v_row, x_at, inputs, in_at, w_row, C,
                                 N, B, K, n);
        } else if (b0 + W <= B) {
          width = W;
          conv_vectors<T, 1>(out + at, base_at, b_row, v_row, x_at, inputs, in_at, w_row, C, N,
                             B, K, n);
        } else {
          width = B - b0;
          conv_tail(width, out + at, base_at, b_row, v_row, x_at, inputs, in_at, w_row, C, N, B,
                    K, n);
        }
        finish(out + at, deriv ? deriv + at : nullptr, width, act);
        b0 += width;
      }
    }
  });
}

// grad[d0 + i] += sum_{n, b} g[n, b] h[d0 + i, n + shift, b] for i < D: D input rings at once,
// so each load of g feeds D accumulators (one vector each) that stay in registers.
template <typename T, int D>
void tap_grad_block(T* grad, const T* g, const T* h, int64_t N, int64_t B, int64_t shift) {
  using Ops = Chunk<T>;
  constexpr int64_t W = Ops::width;
  typename Ops::Vec acc[D] = {};
  T tail[D] = {};
  for (int64_t n = 0; n < N; ++n) {
    const T* a = g + n * B;
    const T* b = h + wrap(n, shift, N) * B;
    int64_t j = 0;
    for (; j + W <= B; j += W) {
      const typename Ops::Vec av = Ops::load(a + j);
      for (int i = 0; i < D; ++i) acc[i] += av * Ops::load(b + i * N * B + j);
    }
    for (; j < B; ++j) {
      for (int i = 0; i < D; ++i) tail[i] += a[j] * b[i * N * B + j];
    }
  }
  for (int i = 0; i < D; ++i) {
    T sum = tail[i];
    for (int64_t j = 0; j < W; ++j) sum += acc[i][j];
    grad[i] += sum;
  }
}

// grad[k, c, d] += sum_{n, b} dz[c, n, b] h[d, n + k - p, b]: the tap gradient of one step.
template <typename T>
void add_tap_grad(T* grad, const T* dz, const T* h, int64_t C, int64_t N, int64_t B,
                  int64_t K) {
  constexpr int64_t kBlock = 4;
  const int64_t pad = K / 2;
  at::parallel_for(0, C * K, std::max<int64_t>(1, 32768 / (C * N * B + 1)),
                   [&](int64_t begin, int64_t end) {
    for (int64_t ck = begin; ck < end; ++ck) {
      const int64_t c = ck / K, k = ck % K;
      const T* g = dz + c * N * B;
      T* out = grad + (k * C + c) * C;
      for (int64_t d = 0; d < C; d += kBlock) {
        const T* rows = h + d * N * B;
        switch (std::min(kBlock, C - d)) {
          case 4: tap_grad_block<T, 4>(out + d, g, rows, N, B, k - pad); break;
          case 3: tap_grad_block<T, 3>(out + d, g, rows, N, B, k - pad); break;
          case 2: tap_grad_block<T, 2>(out + d, g, rows, N, B, k - pad); break;
          default: tap_grad_block<T, 1>(out + d, g, rows, N, B, k - pad);
        }
      }
    }
  });
}

}  // namespace

// states (T, C, N, B) = act(U h_{t-1} + V x_t + bias); x (B, T, I), h0 (C, N, B), taps (K, C, C).
torch::Tensor ring_forward(torch::Tensor x, torch::Tensor h0, torch::Tensor weight,
                           torch::Tensor bias, torch::Tensor taps, int64_t act) {
  const int64_t B = x.size(0), T = x.size(1), I = x.size(2), K = taps.size(0);
  const int64_t C = taps.size(1), N = h0.size(1);
  auto xt = x.permute({1, 2, 0}).contiguous();  // (T, I, B): a step's inputs as rows
  auto v = weight.contiguous();
  auto states = at::empty({T, C, N, B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ring_forward", [&] {
    const int64_t size = C * N * B;
    scalar_t* s = states.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* prev = t ? s + (t - 1) * size : h0.data_ptr<scalar_t>();
      conv_step<scalar_t>(s + t * size, nullptr, bias.data_ptr<scalar_t>(),
                          v.data_ptr<scalar_t>(), xt.data_ptr<scalar_t>() + t * I * B, I, prev,
                          taps.data_ptr<scalar_t>(), nullptr, act, C, N, B, K);
    }
  });
  return states;
}

// Gradients of x, h0 (C, N, B), V, bias and taps for grad_states (T, C, N, B); undefined
// tensors for those not wanted. dz of a step lives in one of two rolling step buffers, and every
// gradient takes its share of it while it is in cache.
std::vector<torch::Tensor> ring_backward(torch::Tensor grad_states, torch::Tensor x,
                                         torch::Tensor h0, torch::Tensor weight,
                                         torch::Tensor states, torch::Tensor taps, int64_t act,
                                         std::vector<bool> wanted) {
  const int64_t T = states.size(0), C = states.size(1), N = states.size(2), B = states.size(3);
  const int64_t K = taps.size(0), I = x.size(2), H = C * N;
  auto adjoint = taps.flip(0).transpose(1, 2).contiguous();  // U^T read at mirrored shifts
  auto xt = wanted[2] ? x.permute({1, 2, 0}).contiguous() : torch::Tensor();  // (T, I, B)
  auto vt = weight.t();
  auto later = at::empty({H, B}, states.options()), here = at::empty_like(later);
  auto grad_taps = at::zeros_like(taps);
  auto grad_xt = wanted[0] ? at::empty({T, I, B}, x.options()) : torch::Tensor();
  auto grad_weight_t = wanted[2] ? at::zeros({I, H}, x.options()) : torch::Tensor();
  auto dz_sum = wanted[3] ? at::zeros({H, B}, x.options()) : torch::Tensor();  // over steps
  torch::Tensor grad_h0;
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "ring_backward", [&] {
    const int64_t size = H * B;
    const scalar_t* s = states.data_ptr<scalar_t>();
    const scalar_t* u = adjoint.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* next = t + 1 < T ? later.data_ptr<scalar_t>() : nullptr;
      here.copy_(grad_states[t].view({H, B}));  // any strides: no full-size contiguous copy
      conv_step<scalar_t>(here.data_ptr<scalar_t>(), here.data_ptr<scalar_t>(), nullptr, nullptr,
                          nullptr, 0, next, u, s + t * size, act, C, N, B, K);
      if (wanted[4]) {
        const scalar_t* prev = t ? s + (t - 1) * size : h0.data_ptr<scalar_t>();
        add_tap_grad<scalar_t>(grad_taps.data_ptr<scalar_t>(), here.data_ptr<scalar_t>(), prev,
                               C, N, B, K);
      }
      if (wanted[0]) {  // (I x H) @ (H x B)
        auto out = grad_xt[t];
        at::mm_out(out, vt, here);
      }
      if (wanted[2]) grad_weight_t.addmm_(xt[t], here.t());  // (I x B) @ (B x H): wide side last
      if (wanted[3]) dz_sum.add_(here);
      std::swap(later, here);
    }
    if (wanted[1]) {
      grad_h0 = at::empty_like(h0);
      conv_step<scalar_t>(grad_h0.data_ptr<scalar_t>(), nullptr, nullptr, nullptr, nullptr, 0,
                          later.data_ptr<scalar_t>(), u, nullptr, kIdentity, C, N, B, K);
    }
  });
  return {
      wanted[0] ? grad_xt.permute({2, 0, 1}) : torch::Tensor(),  // (B, T, I)
      grad_h0,
      wanted[2] ? grad_weight_t.t() : torch::Tensor(),
      wanted[3] ? dz_sum.sum(1) : torch::Tensor(),
      wanted[4] ? grad_taps : torch::Tensor(),
  };
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &ring_forward, "wRNN recurrence forward (CPU)");
  m.def("backward", &ring_backward, "wRNN recurrence BPTT (CPU)");
}
