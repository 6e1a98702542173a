"""Every form of the recurrences that runs on CUDA equals the per-step reference in values and
gradients: each layer's reference and fast forms (the ring's eager and Triton forms, the untied
ring, the dense and sheet forms) and the state-space layers' FFT form. Each runs on the GPU in
float64 (equal to round-off) and in float32 with TF32 off (TF32 rounds products to 10 bits: a
lower precision, not an error of a form), against the reference in float64 on the CPU. Run by
scripts/gpu_check.sh; skipped where there is no CUDA GPU."""

import copy
import math
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from wave_lightning.nn import IRNN, LocalRNN, WaveRNN, WaveSheetRNN
from wave_lightning.nn.kernels.diagonal import diagonal_recurrence, diagonal_recurrence_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CPU_ONLY = ("cpp",)
LAYERS: dict[str, Callable[[], nn.Module]] = {
    "WaveRNN": lambda: WaveRNN(3, 20, 6, recurrent_init="random", input_init="default"),
    "WaveRNN-k5-tanh": lambda: WaveRNN(
        3, 17, 3, kernel_size=5, recurrent_init="random", activation="tanh"
    ),
    "WaveRNN-1ring-identity": lambda: WaveRNN(
        2, 9, 1, recurrent_init="random", input_init="normal", activation="identity"
    ),
    "LocalRNN": lambda: LocalRNN(3, 20, 6, kernel_size=5, recurrent_init="random"),
    "IRNN": lambda: IRNN(3, 48, recurrent_init="random"),
    "WaveSheetRNN": lambda: WaveSheetRNN(3, 5, 4, n_ch=2, recurrent_init="random"),
}


def cuda_forms(layer: nn.Module) -> list[str]:
    """The forms of the recurrence that `layer` runs on CUDA: the reference and each fast form
    but the CPU-only ones, where the layer's configuration allows it."""
    forms = []
    for impl in ("reference", *layer.fast_impls):
        if impl in CPU_ONLY:
            continue
        try:
            layer.impl = impl
        except ValueError:  # a form for other configurations (the linear ring's, say)
            continue
        forms.append(impl)
    return forms


FORMS = [(name, impl) for name, make in LAYERS.items() for impl in cuda_forms(make())]
# the largest error allowed, relative to the largest magnitude of each compared tensor: on the
# CPU the forms' errors are about 1e-15 (float64) and 5e-7 (float32) at these sizes
RELATIVE_ERROR = {torch.float64: 1e-12, torch.float32: 1e-5}
# the FFT form's float32 error grows with the length: about 6e-6 at 200 steps on the CPU
FFT_RELATIVE_ERROR = {torch.complex128: 1e-12, torch.complex64: 1e-4}
BATCH, STEPS = 5, 30


@pytest.fixture(autouse=True)
def no_tf32() -> Iterator[None]:
    """float32 products in float32, for the length of one test."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, relative: float) -> None:
    """got equals want (float64) to `relative` times want's largest magnitude."""
    assert got.shape == want.shape
    torch.testing.assert_close(
        got.to(want.dtype), want, rtol=0, atol=relative * want.abs().max().item()
    )


def states_and_grads(
    layer: nn.Module, impl: str, x: torch.Tensor, h0: torch.Tensor | None
) -> list[torch.Tensor]:
    """States, last state and the gradients of a fixed random loss w.r.t. x, h0, parameters."""
    layer.impl = impl
    inputs = [t if t is None else t.detach().requires_grad_() for t in (x, h0)]
    states, last = layer(*inputs)
    weights = torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    loss = (states * weights.to(states)).sum() + last.square().sum()
    wrt = [t for t in inputs if t is not None] + list(layer.parameters())
    return [states, last, *torch.autograd.grad(loss, wrt)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("give_h0", [True, False], ids=["h0", "no-h0"])
@pytest.mark.parametrize(("name", "impl"), FORMS, ids=[f"{n}-{i}" for n, i in FORMS])
def test_cuda_form_equals_reference(name, impl, give_h0, dtype):
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    x = torch.randn(BATCH, STEPS, layer.input_size, dtype=torch.float64)
    h0 = torch.randn(BATCH, layer.hidden_size, dtype=torch.float64).relu() if give_h0 else None
    want = states_and_grads(copy.deepcopy(layer), "reference", x, h0)
    moved = [t if t is None else t.to("cuda", dtype) for t in (x, h0)]
    got = states_and_grads(copy.deepcopy(layer).to("cuda", dtype), impl, *moved)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.is_cuda and a.dtype == dtype
        assert_close_to_scale(a.cpu(), b, RELATIVE_ERROR[dtype])


def complex_value_and_grads(
    fn: Callable, log_lam: torch.Tensor, drive: torch.Tensor, weight: torch.Tensor
) -> list[torch.Tensor]:
    """fn(log_lam, drive) and the gradients of sum(Re(conj(weight) * fn)) w.r.t. both."""
    inputs = [t.detach().requires_grad_() for t in (log_lam, drive)]
    out = fn(*inputs)
    loss = (weight.to(out).conj() * out).real.sum()
    return [out, *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=["float64", "float32"])
def test_cuda_fft_form_of_the_diagonal_recurrence_equals_reference(dtype):
    torch.manual_seed(0)
    nu = 0.01 * (1 + torch.rand(8, 16, dtype=torch.float64))
    log_lam = torch.complex(-nu, math.pi * (2 * torch.rand(8, 16, dtype=torch.float64) - 1))
    drive = torch.randn(4, 200, 8, 16, dtype=torch.complex128)
    weight = torch.randn(drive.shape, dtype=torch.complex128)
    want = complex_value_and_grads(diagonal_recurrence_reference, log_lam, drive, weight)
    moved = [t.to("cuda", dtype) for t in (log_lam, drive, weight)]
    got = complex_value_and_grads(diagonal_recurrence, *moved)
    for a, b in zip(got, want, strict=True):
        assert a.is_cuda and a.dtype == dtype
        assert_close_to_scale(a.cpu(), b, FFT_RELATIVE_ERROR[dtype])


@pytest.mark.parametrize("name", list(LAYERS))
def test_auto_picks_a_form_that_runs_on_cuda(name):
    layer = LAYERS[name]().cuda()
    x = torch.zeros(1, 2, layer.input_size, device="cuda")
    assert layer.resolve_impl(x) in cuda_forms(LAYERS[name]())


def test_the_cpp_form_refuses_cuda_tensors():
    layer = WaveRNN(1, 4, 2).cuda()
    layer.impl = "cpp"
    with pytest.raises(RuntimeError, match="impl='cpp' runs on float32/float64 CPU tensors"):
        layer(torch.zeros(1, 2, 1, device="cuda"))
