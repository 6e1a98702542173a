"""Diagonal state-space baselines: S4D (Gu et al. 2022) and the LRU (Orvieto et al. 2023).

Both are linear time-invariant maps from a sequence of hidden_size channels to another,
trained in parallel over time by the FFT form of kernels/diagonal.py. Each layer is the
published state-space map alone: the GELU, the GLU output mixing, normalisation and dropout
of the papers' blocks belong to the deep residual stack (wave_lightning.models.stack), which
wraps any layer. Every parameter is real (complex ones are stored as real and imaginary
parts), so that optimizers, gradient clipping and DDP see plain tensors.

The state is complex and larger than hidden_size (S4D: hidden_size x state_size / 2 modes;
LRU: state_size modes), so it is no (B, hidden_size) tensor: a sequence always starts from the
zero state, and h0 must be None. h_n is the output's last step.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels.diagonal import causal_convolution, diagonal_recurrence, mode_powers
from .options import check_choice, check_positive, check_sequence

S4D_INITS = ("lin", "inv")


class _StateSpaceLayer(nn.Module):
    """What S4D and the LRU share: sizes, checks, and the input projection.

    The published layers map H channels to H channels; for input_size != hidden_size a
    Linear(input_size, hidden_size) (`input`) comes first, else `input` is the identity.
    """

    def __init__(self, input_size: int, hidden_size: int, state_size: int) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)
        self.state_size = check_positive("state_size", state_size)
        same = input_size == hidden_size
        self.input = nn.Identity() if same else nn.Linear(input_size, hidden_size)

    def project(self, x: Tensor, h0: Tensor | None) -> Tensor:
        """The projected input u (B, T, hidden_size), once x and h0 are checked."""
        if h0 is not None:
            raise ValueError(f"h0 must be None: {type(self).__name__} starts from the zero state")
        check_sequence(x, self.input_size)
        return self.input(x)


class S4D(_StateSpaceLayer):
    """S4D: hidden_size independent SISO SSMs x' = A x + B u, y = C x + D u, each with
    state_size / 2 complex modes (the conjugate halves are implicit, hence y = 2 Re(C x)).

    Discretised by zero-order hold with a learnt step dt per channel:
        x_k = exp(dt A) x_{k-1} + (exp(dt A) - 1) / A * B u_k,   y_k = 2 Re(C x_k) + D u_k,
    computed as one causal convolution of u with the kernel K_k = 2 Re(C (exp(dt A) - 1) / A
    exp(dt A)^k B). Parameters as the published minimal S4D (state-spaces/s4, s4d.py): log_dt
    (H) log-uniform in [dt_min, dt_max]; A = -exp(log_A_real) + i A_imag with Re A = -1/2 and
    A_imag pi n (init "lin", S4D-Lin) or N / pi (N / (2n + 1) - 1) (init "inv", S4D-Inv),
    n = 0..N/2-1, N = state_size; B = 1 (folded into C); C (H, N/2, 2) standard complex
    normal; D (H) standard normal.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        init: str = "lin",
    ) -> None:
        super().__init__(input_size, hidden_size, state_size)
        if state_size % 2:
            raise ValueError(f"state_size must be even (state_size / 2 modes), got {state_size}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got "
                f"dt_min={dt_min!r}, dt_max={dt_max!r}"
            )
        check_choice("init", init, S4D_INITS)
        modes = torch.arange(state_size // 2, dtype=torch.float64).repeat(hidden_size, 1)
        if init == "lin":
            imag = math.pi * modes
        else:
            imag = state_size / math.pi * (state_size / (2 * modes + 1) - 1)
        log_dt = torch.rand(hidden_size, dtype=torch.float64)
        log_dt = log_dt * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dtype = torch.get_default_dtype()
        self.log_dt = nn.Parameter(log_dt.to(dtype))
        self.log_A_real = nn.Parameter(torch.full_like(modes, math.log(0.5), dtype=dtype))
        self.A_imag = nn.Parameter(imag.to(dtype))
        c = torch.randn(hidden_size, state_size // 2, dtype=torch.complex128)
        self.C = nn.Parameter(torch.view_as_real(c).to(dtype))
        self.D = nn.Parameter(torch.randn(hidden_size))

    def dt_A(self) -> tuple[Tensor, Tensor]:
        """(dt A, A), each complex (H, N/2): the logarithms of the discrete eigenvalues, and A."""
        a = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        return torch.exp(self.log_dt)[:, None] * a, a

    def kernel(self, length: int) -> Tensor:
        """The convolution kernel K_k, k = 0..length-1, as (length, H)."""
        dt_a, a = self.dt_A()
        c = torch.view_as_complex(self.C) * torch.expm1(dt_a) / a
        return 2 * (mode_powers(dt_a, length) * c).sum(-1).real

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (outputs (B, T, H), last output (B, H)); h0 must be None."""
        u = self.project(x, h0)
        y = causal_convolution(self.kernel(u.shape[1]), u) + self.D * u
        return y, y[:, -1]


class LRU(_StateSpaceLayer):
    """Linear Recurrent Unit: a diagonal complex linear recurrence of state_size modes,

        x_k = diag(lambda) x_{k-1} + gamma * (B u_k),   y_k = Re(C x_k) + D * u_k,

    with lambda = exp(-exp(nu_log) + i exp(theta_log)) (the exponential parametrisation: every
    |lambda| < 1) and the normalisation gamma = exp(gamma_log), initialised to
    sqrt(1 - |lambda|^2). Init as published: |lambda| uniform on the ring [r_min, r_max] of
    the complex plane (nu_log = log(-log(u (r_max^2 - r_min^2) + r_min^2) / 2), u ~ U[0, 1)),
    phase uniform in [0, max_phase); B = B_re + i B_im (state_size, H), parts normal with
    variance 1 / (2 H); C = C_re + i C_im (H, state_size), variance 1 / state_size; D (H)
    standard normal.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int = 64,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
    ) -> None:
        super().__init__(input_size, hidden_size, state_size)
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(
                f"r_min and r_max must satisfy 0 <= r_min < r_max <= 1, got "
                f"r_min={r_min!r}, r_max={r_max!r}"
            )
        if not max_phase > 0:
            raise ValueError(f"max_phase must be > 0, got {max_phase!r}")
        n, h, f64 = state_size, hidden_size, torch.float64
        radius_sq = torch.rand(n, dtype=f64) * (r_max**2 - r_min**2) + r_min**2
        nu = -0.5 * torch.log(radius_sq)
        dtype = torch.get_default_dtype()
        self.nu_log = nn.Parameter(torch.log(nu).to(dtype))
        self.theta_log = nn.Parameter(torch.log(max_phase * torch.rand(n, dtype=f64)).to(dtype))
        # sqrt(1 - |lambda|^2) with |lambda|^2 = exp(-2 nu), exact for |lambda| near 1
        self.gamma_log = nn.Parameter((0.5 * torch.log(-torch.expm1(-2 * nu))).to(dtype))
        self.B_re = nn.Parameter(torch.randn(n, h) / math.sqrt(2 * h))
        self.B_im = nn.Parameter(torch.randn(n, h) / math.sqrt(2 * h))
        self.C_re = nn.Parameter(torch.randn(h, n) / math.sqrt(n))
        self.C_im = nn.Parameter(torch.randn(h, n) / math.sqrt(n))
        self.D = nn.Parameter(torch.randn(h))

    def log_lambda(self) -> Tensor:
        """log lambda = -exp(nu_log) + i exp(theta_log), complex (state_size,)."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (outputs (B, T, H), last output (B, H)); h0 must be None."""
        u = self.project(x, h0)
        gamma = torch.exp(self.gamma_log)
        drive = torch.complex(F.linear(u, self.B_re), F.linear(u, self.B_im)) * gamma
        states = diagonal_recurrence(self.log_lambda(), drive)
        y = F.linear(states.real, self.C_re) - F.linear(states.imag, self.C_im) + self.D * u
        return y, y[:, -1]
