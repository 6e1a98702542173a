"""S4D and LRU: the parallel diagonal recurrence equals its per-step form, each layer equals a
literal per-step transcription of its paper's equations (values and every gradient, float64),
the published initialisations are stable, bad arguments are refused, and both train by CLI."""

import math

import pytest
import torch

from tests.helpers import ROOT
from wave_lightning.fit import WaveCLI
from wave_lightning.nn import LRU, S4D
from wave_lightning.nn.kernels.diagonal import (
    diagonal_recurrence,
    diagonal_recurrence_reference,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """Small tensors gain nothing from threads; on a shared machine threads only spin."""
    torch_threads(1)


def random_log_lam(shape: tuple[int, ...], nu_min: float, dtype=F64) -> torch.Tensor:
    """log lambda = -nu + i theta with nu in [nu_min, 2 nu_min + 0.3), theta in [-pi, pi)."""
    nu = nu_min * (1 + torch.rand(shape, dtype=dtype)) + 0.3 * torch.rand(shape, dtype=dtype)
    theta = math.pi * (2 * torch.rand(shape, dtype=dtype) - 1)
    return torch.complex(-nu, theta)


def value_and_grads(fn, inputs: list[torch.Tensor], weight: torch.Tensor):
    """fn(*inputs), and the gradients of sum(Re(conj(weight) * fn)) with respect to inputs."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    loss = (weight.conj() * out).real.sum()
    return out.detach(), torch.autograd.grad(loss, inputs)


# --- the parallel primitive ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lam_shape", "drive_shape", "complex_drive"),
    [
        ((5,), (3, 40, 5), True),
        ((4, 6), (2, 33, 4, 6), True),
        ((6,), (2, 17, 3, 6), False),  # one lambda per mode, broadcast over 3 channels
        ((2, 1, 4), (1, 25, 2, 3, 4), True),
    ],
)
@pytest.mark.parametrize("nu_min", [1e-1, 1e-6])  # 1e-6: |lambda| a hair inside the unit circle
def test_parallel_recurrence_equals_the_per_step_one(lam_shape, drive_shape, complex_drive, nu_min):
    torch.manual_seed(0)
    log_lam = random_log_lam(lam_shape, nu_min)
    drive = torch.randn(drive_shape, dtype=torch.complex128 if complex_drive else F64)
    shape = (*drive_shape[:2], *torch.broadcast_shapes(drive_shape[2:], lam_shape))
    weight = torch.randn(shape, dtype=torch.complex128)
    fast, fast_grads = value_and_grads(diagonal_recurrence, [log_lam, drive], weight)
    ref, ref_grads = value_and_grads(diagonal_recurrence_reference, [log_lam, drive], weight)
    assert fast.shape == ref.shape and fast.dtype == torch.complex128
    scale = ref.abs().max()
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12 * scale)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11 * want.abs().max())


def test_first_state_is_the_first_drive_and_an_impulse_decays_as_lambda_to_the_k():
    log_lam = torch.tensor([complex(-0.1, 0.5), complex(-1e-4, -2.0)], dtype=torch.complex128)
    drive = torch.zeros(1, 12, 2, dtype=torch.complex128)
    drive[0, 0] = torch.tensor([2.0, 1j])
    states = diagonal_recurrence(log_lam, drive)[0]
    k = torch.arange(12, dtype=F64)[:, None]
    torch.testing.assert_close(states, drive[0, 0] * torch.exp(k * log_lam), rtol=1e-13, atol=0)


def test_float32_over_784_steps_near_the_unit_circle_matches_float64():
    torch.manual_seed(1)
    nu = 1e-5 * (1 + torch.rand(8, 16, dtype=F64))  # |lambda| > 1 - 2e-5: no decay over T
    log_lam = torch.complex(-nu, math.pi * (2 * torch.rand(8, 16, dtype=F64) - 1))
    drive = torch.randn(4, 784, 8, 16, dtype=torch.complex128)
    ref = diagonal_recurrence_reference(log_lam, drive)
    fast = diagonal_recurrence(log_lam.to(torch.complex64), drive.to(torch.complex64))
    ref32 = diagonal_recurrence_reference(log_lam.to(torch.complex64), drive.to(torch.complex64))
    assert fast.dtype == torch.complex64
    error = (fast.to(torch.complex128) - ref).abs().max() / ref.abs().max()
    error_per_step = (ref32.to(torch.complex128) - ref).abs().max() / ref.abs().max()
    assert error < 1e-4 and error < 3 * error_per_step  # as good as float32's per-step loop


# --- literal per-step transcriptions of the papers' equations ------------------------------


def s4d_per_step(layer: S4D, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D, Gu et al. 2022: ZOH x_k = Abar x_{k-1} + Bbar u_k (B = 1), y_k = 2 Re(C x_k) + D u_k."""
    u = layer.input(x)
    dt = torch.exp(layer.log_dt)[:, None]
    A = -torch.exp(layer.log_A_real) + 1j * layer.A_imag
    A_bar = torch.exp(dt * A)
    B_bar = (A_bar - 1) / A * 1.0
    C = layer.C[..., 0] + 1j * layer.C[..., 1]
    state = torch.zeros(x.shape[0], *A.shape, dtype=A.dtype)
    outputs = []
    for k in range(x.shape[1]):
        state = A_bar * state + B_bar * u[:, k, :, None]
        outputs.append(2 * (C * state).sum(-1).real + layer.D * u[:, k])
    y = torch.stack(outputs, 1)
    return y, outputs[-1]


def lru_per_step(layer: LRU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LRU, Orvieto et al. 2023: x_k = Lambda x_{k-1} + gamma B u_k, y_k = Re(C x_k) + D u_k."""
    u = layer.input(x)
    Lambda = torch.exp(-torch.exp(layer.nu_log) + 1j * torch.exp(layer.theta_log))
    B_norm = (layer.B_re + 1j * layer.B_im) * torch.exp(layer.gamma_log)[:, None]
    C = layer.C_re + 1j * layer.C_im
    state = torch.zeros(x.shape[0], Lambda.shape[0], dtype=Lambda.dtype)
    outputs = []
    for k in range(x.shape[1]):
        state = Lambda * state + u[:, k].to(B_norm.dtype) @ B_norm.T
        outputs.append((state @ C.T).real + layer.D * u[:, k])
    y = torch.stack(outputs, 1)
    return y, outputs[-1]


LAYERS = [
    pytest.param(lambda: S4D(3, 5, state_size=8, init="lin"), s4d_per_step, id="s4d-lin"),
    pytest.param(lambda: S4D(4, 4, state_size=6, init="inv"), s4d_per_step, id="s4d-inv-square"),
    pytest.param(lambda: LRU(3, 5, state_size=7), lru_per_step, id="lru"),
    pytest.param(lambda: LRU(4, 4, 6, r_min=0.99, r_max=0.999), lru_per_step, id="lru-slow"),
]


@pytest.mark.parametrize(("make", "per_step"), LAYERS)
def test_layer_equals_its_published_per_step_equations(make, per_step):
    torch.manual_seed(0)
    layer = make().double()
    x = torch.randn(2, 37, layer.input_size, dtype=F64, requires_grad=True)
    w_out = torch.randn(2, 37, layer.hidden_size, dtype=F64)
    w_last = torch.randn(2, layer.hidden_size, dtype=F64)
    params = [x, *layer.parameters()]
    results = []
    for fn in (layer, lambda x: per_step(layer, x)):
        y, last = fn(x)
        loss = (w_out * y).sum() + (w_last * last).sum()
        results.append((y.detach(), last.detach(), torch.autograd.grad(loss, params)))
    (y, last, grads), (y_ref, last_ref, grads_ref) = results
    assert y.shape == (2, 37, layer.hidden_size) and last.shape == (2, layer.hidden_size)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-12)
    names = ["x", *(name for name, _ in layer.named_parameters())]
    assert len(names) == len(grads) == len(grads_ref)
    for name, got, want in zip(names, grads, grads_ref, strict=True):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=name)


# --- initialisation -----------------------------------------------------------------------


def test_s4d_init_is_stable_and_as_published():
    torch.manual_seed(0)
    n, dt_min, dt_max = 16, 1e-3, 1e-1
    modes = torch.arange(n // 2, dtype=torch.float32)
    for init, imag in [("lin", math.pi * modes), ("inv", n / math.pi * (n / (2 * modes + 1) - 1))]:
        layer = S4D(2, 4000, state_size=n, dt_min=dt_min, dt_max=dt_max, init=init)
        dt_a, a = layer.dt_A()
        assert torch.all(a.real == -0.5)
        torch.testing.assert_close(layer.A_imag, imag.expand(4000, -1))
        assert torch.all(torch.exp(dt_a).abs() < 1)  # every discrete eigenvalue
        log_dt = layer.log_dt.double()
        assert math.log(dt_min) <= log_dt.min() and log_dt.max() <= math.log(dt_max)
        # log-uniform: log dt's quartiles at a quarter, half and three quarters of the range
        quartiles = torch.quantile(log_dt, torch.tensor([0.25, 0.5, 0.75], dtype=F64))
        span = math.log(dt_max) - math.log(dt_min)
        expected = math.log(dt_min) + span * torch.tensor([0.25, 0.5, 0.75], dtype=F64)
        torch.testing.assert_close(quartiles, expected, rtol=0, atol=0.03 * span)
        c = layer.C  # complex standard normal: each part of variance 1/2
        assert layer.C.shape == (4000, n // 2, 2)
        assert c.var().item() == pytest.approx(0.5, rel=0.03)
        assert layer.D.var().item() == pytest.approx(1.0, rel=0.1)


def test_lru_init_is_stable_and_as_published():
    torch.manual_seed(0)
    r_min, r_max, max_phase, n, h = 0.4, 0.9, math.pi / 10, 20000, 50
    layer = LRU(3, h, state_size=n, r_min=r_min, r_max=r_max, max_phase=max_phase)
    modulus = torch.exp(-torch.exp(layer.nu_log.double()))
    phase = torch.exp(layer.theta_log.double())
    assert torch.all(torch.exp(layer.log_lambda()).abs() < 1)
    assert r_min <= modulus.min() and modulus.max() <= r_max
    assert phase.min() >= 0 and phase.max() <= max_phase
    # uniform on the ring: |lambda|^2 uniform in [r_min^2, r_max^2], the phase in [0, max_phase]
    probs = torch.tensor([0.25, 0.5, 0.75], dtype=F64)
    area = r_min**2 + (r_max**2 - r_min**2) * probs
    torch.testing.assert_close(torch.quantile(modulus**2, probs), area, rtol=0, atol=0.01)
    torch.testing.assert_close(torch.quantile(phase, probs), max_phase * probs, rtol=0, atol=0.01)
    gamma = torch.exp(layer.gamma_log.double())
    torch.testing.assert_close(gamma, torch.sqrt(1 - modulus**2), rtol=1e-5, atol=0)
    assert layer.B_re.var().item() == pytest.approx(1 / (2 * h), rel=0.03)
    assert layer.B_im.var().item() == pytest.approx(1 / (2 * h), rel=0.03)
    assert layer.C_re.var().item() == pytest.approx(1 / n, rel=0.03)
    assert layer.C_im.var().item() == pytest.approx(1 / n, rel=0.03)
    assert layer.D.shape == (h,)


def test_lru_default_ring_is_the_open_unit_disc_with_full_phase():
    torch.manual_seed(0)
    layer = LRU(2, 3, state_size=4000)
    modulus = torch.exp(-torch.exp(layer.nu_log.double()))
    phase = torch.exp(layer.theta_log.double())
    assert 0 <= modulus.min() < 0.05 and 0.99 < modulus.max() < 1
    assert 0 <= phase.min() < 0.01 and 2 * math.pi - 0.01 < phase.max() <= 2 * math.pi
    assert torch.isfinite(layer.gamma_log).all()


# --- the layer API and bad input ----------------------------------------------------------


@pytest.mark.parametrize("cls", [S4D, LRU])
def test_input_projection_only_when_sizes_differ(cls):
    assert isinstance(cls(6, 6, 4).input, torch.nn.Identity)
    projection = cls(2, 6, 4).input
    assert isinstance(projection, torch.nn.Linear)
    assert (projection.in_features, projection.out_features) == (2, 6)


@pytest.mark.parametrize("cls", [S4D, LRU])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_parameters_are_real_tensors_of_the_default_dtype_with_storage_of_their_own(cls, dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        layer = cls(2, 3, 4)
    finally:
        torch.set_default_dtype(previous)
    for name, p in layer.named_parameters():
        assert p.dtype == dtype and p.is_contiguous() and 0 not in p.stride(), name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: S4D(2, 3, state_size=5), "state_size must be even"),
        (lambda: S4D(2, 3, state_size=0), "state_size must be a positive integer"),
        (lambda: S4D(0, 3), "input_size must be a positive integer"),
        (lambda: S4D(2, 3, dt_min=0.1, dt_max=0.01), "0 < dt_min <= dt_max"),
        (lambda: S4D(2, 3, dt_min=0.0), "0 < dt_min <= dt_max"),
        (lambda: S4D(2, 3, init="legs"), "init='legs' is not allowed; choose one of lin, inv"),
        (lambda: LRU(2, 0), "hidden_size must be a positive integer"),
        (lambda: LRU(2, 3, r_min=0.9, r_max=0.9), "0 <= r_min < r_max <= 1"),
        (lambda: LRU(2, 3, r_max=1.5), "0 <= r_min < r_max <= 1"),
        (lambda: LRU(2, 3, r_min=-0.1), "0 <= r_min < r_max <= 1"),
        (lambda: LRU(2, 3, max_phase=0.0), "max_phase must be > 0"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("cls", [S4D, LRU])
def test_bad_calls_raise_a_value_error(cls):
    layer = cls(2, 3, 4)
    with pytest.raises(ValueError, match="h0 must be None"):
        layer(torch.randn(1, 5, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time >= 1, 2\)"):
        layer(torch.randn(1, 5, 3))


# --- a real CLI fit -----------------------------------------------------------------------


@pytest.mark.parametrize(("config", "cls"), [("s4d", S4D), ("lru", LRU)])
def test_a_tiny_copy_task_fit_from_the_model_config(config, cls, tmp_path):
    args = ["--config", str(ROOT / "conf/data/copy.yaml")]
    args += ["--config", str(ROOT / f"conf/model/{config}.yaml")]
    args += ["--model.layer.init_args.hidden_size", "6", "--model.layer.init_args.state_size", "4"]
    args += ["--data.delay", "6", "--data.memory_length", "2", "--data.batch_size", "8"]
    args += ["--data.train_batches", "3", "--data.val_size", "8", "--data.test_size", "8"]
    args += ["--trainer.max_steps", "3", "--trainer.accelerator", "cpu"]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    cli = WaveCLI(args=args, run=False)
    layer = cli.model.model.layer
    before = {name: p.detach().clone() for name, p in layer.named_parameters()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert isinstance(layer, cls) and layer.state_size == 4 and cli.trainer.global_step == 3
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    moved = [name for name, p in layer.named_parameters() if not torch.equal(p, before[name])]
    assert moved == list(before)  # every parameter of the layer was trained
