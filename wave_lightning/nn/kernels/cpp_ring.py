"""The ring recurrences (WaveRNN's tied and LocalRNN's untied taps) as a C++ CPU extension
(csrc/ring_cpu.cpp), compiled on first use.

The whole time loop runs in C++, one slice of the batch per thread: a step of the circular
convolution is a register-blocked product that sums the taps, adds the bias and applies the
activation (or, backwards, its derivative) while a block of channels x batch sits in registers,
so the per-step cost is arithmetic, not the fixed cost of a dozen framework calls. Compiled
with `-O3 -march=native` by torch.utils.cpp_extension (needs a C++ compiler and ninja), cached
per CPU model, torch build and source; where it cannot be built, `available()` is False and
"auto" falls back to the eager fast form.
"""

import contextlib
import functools
import hashlib
import logging
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .activations import ACTIVATION_CODES
from .fast_ring import batch_first

SOURCE = Path(__file__).with_name("csrc") / "ring_cpu.cpp"
# From this input width on, the input projection V x_t + b runs as one GEMM over every step
# before the loop (BLAS's rate) and the loop adds its result; narrower inputs are projected
# inside the loop's product, where a few rows cost less than a full-size drive tensor.
WIDE_INPUT = 128


def cpu_tag() -> str:
    """The CPU's architecture, model and flags: a -march=native build runs only there."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = [platform.processor()]
    return platform.machine() + "".join(lines)


def torch_tag() -> str:
    """The torch build the extension links against: version, install location, C++ ABI."""
    return f"{torch.__version__} {Path(torch.__file__).parent} {torch._C._GLIBCXX_USE_CXX11_ABI}"


def build_name() -> str:
    """The extension's name: a hash of the CPU, the torch build and the source, so that venvs
    with other torch builds (or another CPU under a shared home) keep builds of their own."""
    text = cpu_tag() + torch_tag() + SOURCE.read_text()
    return f"wave_lightning_ring_cpu_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def announce_build(name: str) -> None:
    """Say on stderr, in one line, that a build starts (it takes tens of seconds): the first
    one, or a rebuild because the inputs changed (a reinstalled torch's headers, say)."""
    from torch.utils.cpp_extension import _get_build_directory

    directory = Path(_get_build_directory(name, verbose=False))
    if not (directory / f"{name}.so").exists():
        why = "once, about 35 s"
    elif rebuild_pending(directory):
        why = "again: its inputs changed since the last build, about 35 s"
    else:
        return
    print(
        f"wave_lightning: compiling the C++ ring recurrence for this CPU and torch build ({why}) "
        f"in {directory}",
        file=sys.stderr,
        flush=True,
    )


def rebuild_pending(directory: Path) -> bool:
    """Whether ninja would build anything in `directory` (a dry run)."""
    with package_ninja():
        dry = subprocess.run(["ninja", "-n", "-C", str(directory)], capture_output=True, text=True)
    return dry.returncode == 0 and "[1/" in dry.stdout


@contextlib.contextmanager
def package_ninja() -> Iterator[None]:
    """PATH with the `ninja` package's binary first while torch builds: two ninja versions (a
    system one, found from outside the venv, and the package's, from inside it) read each other's
    build log as stale, so runs that alternate between them rebuilt the extension each time."""
    try:
        import ninja
    except ImportError:  # not installed: torch finds whatever ninja there is
        yield
        return
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
    try:
        yield
    finally:
        os.environ["PATH"] = path


@functools.cache
def extension():
    """The compiled module (built once per source, flags, CPU and torch build; later loads
    reuse it)."""
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its import warns that there is no CUDA, which is no matter
    try:
        from torch.utils.cpp_extension import load

        name = build_name()
        announce_build(name)
        # FMA contraction (off by default in ISO C++ mode) and OpenMP, without which ATen's
        # parallel_for in the kernel runs on one thread; GCC's -fopenmp links the libgomp that
        # torch has loaded. Elsewhere (e.g. Apple's clang, which refuses -fopenmp) the batch
        # slices run one after the other.
        openmp = (
            ["-fopenmp"] if sys.platform == "linux" and torch.backends.openmp.is_available() else []
        )
        flags = ["-O3", "-march=native", "-ffp-contract=fast", *openmp]
        with package_ninja():
            return load(name=name, sources=[str(SOURCE)], extra_cflags=flags, extra_ldflags=openmp)
    finally:
        quiet.setLevel(level)


@functools.cache
def available() -> bool:
    """Whether the extension builds and loads here; warns once with the reason if not."""
    try:
        extension()
    except Exception as error:  # no compiler, no ninja, a failed build: use the eager form
        warnings.warn(f"wave_lightning: C++ ring recurrence unavailable ({error}); using the "
                      "eager fast form", stacklevel=2)  # fmt: skip
        return False
    return True


def empty_cache() -> None:
    """Free the memory the C++ form keeps for the next call's states (one block, the size of the
    last states freed; like torch.cuda.empty_cache, for when the memory is wanted elsewhere)."""
    if extension.cache_info().currsize:  # built and loaded: else nothing is kept
        extension().empty_cache()


def supports(x: Tensor) -> bool:
    """Whether the C++ form runs for input x: a float32 or float64 CPU tensor."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


class CppRingRecurrence(torch.autograd.Function):
    """The C++ loop's outputs: with `output`, the states (B, T, C, N), contiguous, of
    act(U h_{t-1} + V x_t + bias) (or of a given drive x_t, where weight and bias are None; else
    an empty tensor); the last state (B, C N) as its own output (so a last-state loss sends no
    full-size gradient); with read_w (O, C N) and read_b (O,), the readout of every step
    (T, O, B) fused into the loop (else an empty tensor). The backward reads the states it
    keeps batch innermost, (T, C, N, B); see ring_cpu.cpp."""

    @staticmethod
    def forward(ctx, x, h0, weight, bias, taps, read_w, read_b, activation: str, output: bool):
        code = ACTIVATION_CODES[activation]
        kept, read, states = extension().forward(
            x, h0, weight, bias, taps, code, read_w, read_b, output
        )
        ctx.save_for_backward(x, h0, weight, kept, taps, read_w)
        ctx.code = code
        ctx.set_materialize_grads(False)
        last = kept[-1].flatten(0, 1).t().clone(memory_format=torch.contiguous_format)
        empty = x.new_empty(0)
        return states if output else empty, last, empty if read is None else read

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states, grad_last, grad_read):
        x, h0, weight, kept, taps, read_w = ctx.saved_tensors
        wanted = list(ctx.needs_input_grad[:7])
        grads = extension().backward(
            grad_states, grad_last, grad_read, read_w, x, h0, weight, kept, taps, ctx.code, wanted
        )
        return (*grads, None, None)


def cpp_ring_recurrence(
    x: Tensor,
    h0: Tensor,
    input_weight: Tensor,
    drive_bias: Tensor,
    taps: Tensor,
    activation: str,
    readout: tuple[Tensor, Tensor] | None = None,
    states: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """States (B, T, C N), contiguous (None unless `states`: a caller that reads only the last
    state or the readout skips writing them), the last state (B, C N) and, for
    readout = (W (O, C N), b (O,)), the readout W h_t + b of every step as (T, O, B) (else
    None), for x (B, T, I), h0 (B, C N), on the CPU: the wRNN's tied taps (K, C, C) or
    LocalRNN's untied taps (K, N, C, C).

    The same contract as fast_ring.ring_recurrence: drive_bias holds every bias. An input of
    WIDE_INPUT or more features is projected before the loop.
    """
    if not supports(x):
        raise RuntimeError(
            f"impl='cpp' runs on float32/float64 CPU tensors, got {x.dtype} on {x.device}; "
            "use impl='fast' or 'auto'"
        )
    batch = x.shape[0]
    h0 = h0.view(batch, taps.shape[-1], -1).permute(1, 2, 0)  # (C, N, B)
    if x.shape[-1] >= WIDE_INPUT:
        x, input_weight, drive_bias = F.linear(x, input_weight, drive_bias), None, None
    extra = -batch % extension().batch_multiple(x)  # the kernel takes whole vectors of sequences
    if extra:
        x, h0 = F.pad(x, (0, 0, 0, 0, 0, extra)), F.pad(h0, (0, extra))
    read_w, read_b = readout if readout is not None else (None, None)
    out, last, read = CppRingRecurrence.apply(
        x, h0.contiguous(), input_weight, drive_bias, taps.contiguous(), read_w, read_b,
        activation, states,
    )  # fmt: skip
    if extra:
        out, last, read = out[:batch], last[:batch], read[..., :batch]
    return batch_first(out) if states else None, last, read if readout is not None else None
