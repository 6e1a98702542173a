"""WaveRNN: rings of hidden units coupled by a circular convolution with tied weights."""

import torch.nn.functional as F
from torch import Tensor, nn

from .base import SimpleRecurrence
from .init import init_input_, init_ring_kernel_
from .kernels import cpp_ring
from .kernels.fast_ring import ring_recurrence
from .kernels.linear_ring import linear_ring_recurrence
from .options import check_positive


def check_ring(n_hid: int, n_ch: int, kernel_size: int) -> None:
    """Raise a ValueError unless the ring sizes and the kernel fit together."""
    check_positive("n_hid", n_hid)
    check_positive("n_ch", n_ch)
    check_positive("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    if n_hid < kernel_size:
        raise ValueError(f"n_hid ({n_hid}) must be at least kernel_size ({kernel_size})")


class RingConv(nn.Module):
    """U h + b for states (B, n_ch * n_hid): a circular Conv1d over each ring (the paper's form)."""

    def __init__(
        self, n_hid: int, n_ch: int, kernel_size: int, init: str, style: str = "paper"
    ) -> None:
        super().__init__()
        self.n_hid, self.n_ch = n_hid, n_ch
        self.conv = nn.Conv1d(
            n_ch, n_ch, kernel_size, padding=kernel_size // 2, padding_mode="circular"
        )
        init_ring_kernel_(self.conv.weight, self.conv.bias, init, style)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(h.view(-1, self.n_ch, self.n_hid)).view(h.shape)


class RingRNN(SimpleRecurrence):
    """n_ch rings of n_hid units (hidden_size = n_ch * n_hid), stored ring by ring, coupled
    within a kernel_size neighbourhood by `ring_class` (tied or untied weights). init_style
    "authors" draws the initial weights as the authors' code does (nn/init.py)."""

    ring_class: type[nn.Module]

    def __init__(
        self,
        input_size: int,
        n_hid: int,
        n_ch: int = 1,
        kernel_size: int = 3,
        recurrent_init: str = "shift",
        input_init: str = "single",
        activation: str = "relu",
        freeze_recurrent: bool = False,
        freeze_input: bool = False,
        init_style: str = "paper",
        impl: str = "auto",
    ) -> None:
        check_ring(n_hid, n_ch, kernel_size)
        super().__init__(
            input_size, n_ch * n_hid, n_hid, input_init, activation, freeze_input, impl
        )
        if init_style == "authors":  # the authors' code's draws: nn/init.py, docs/fidelity.md
            init_input_(self.input, input_init, n_hid, init_style)
        self.n_hid, self.n_ch, self.kernel_size = n_hid, n_ch, kernel_size
        self.recurrent = self.ring_class(n_hid, n_ch, kernel_size, recurrent_init, init_style)
        self.recurrent.requires_grad_(not freeze_recurrent)

    def resolve_impl(self, x: Tensor) -> str:
        """ "auto" picks the C++ loop for float32/64 CPU inputs where it builds (the fastest CPU
        form at every measured size: docs/performance.md), else "fast"."""
        if self.impl == "auto" and cpp_ring.supports(x) and cpp_ring.available():
            return "cpp"
        return super().resolve_impl(x)

    def fast_recurrence(self, x: Tensor, h0: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """The hand-written BPTT form `impl` ("cpp" or "fast") of the ring recurrence."""
        args = self.cpp_args(x, h0)
        return cpp_ring.cpp_ring_recurrence(*args)[:2] if impl == "cpp" else ring_recurrence(*args)

    def read_every_step(
        self, x: Tensor, readout: nn.Linear, h0: Tensor | None = None
    ) -> Tensor | None:
        """The C++ form reads every step inside its loop (forwards W h_t, backwards W^T dy_t
        into dz_t), so the states' gradient is never built; other forms return None."""
        h0 = self.initial_state(x, h0)
        if self.resolve_impl(x) != "cpp":
            return None
        readout = (readout.weight, readout.bias)
        return cpp_ring.cpp_ring_recurrence(*self.cpp_args(x, h0), readout, states=False)[2]

    def last_state(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        """The last state (B, H); the C++ form then skips writing the batch-first states."""
        if self.resolve_impl(x) != "cpp":
            return super().last_state(x, h0)
        h0 = self.initial_state(x, h0)
        return cpp_ring.cpp_ring_recurrence(*self.cpp_args(x, h0), states=False)[1]

    def cpp_args(self, x: Tensor, h0: Tensor) -> tuple:
        """The arguments of cpp_ring_recurrence (and ring_recurrence) for x and h0."""
        return x, h0, self.input.weight, self.drive_bias(), self.taps(), self.activation_name

    def drive_bias(self) -> Tensor:
        """The input projection's bias plus every unit's ring bias, (C N,): one bias per step."""
        raise NotImplementedError

    def taps(self) -> Tensor:
        """The ring weights as the fast forms take them: (K, C, C) tied or (K, N, C, C) untied."""
        raise NotImplementedError


class WaveRNN(RingRNN):
    """The wRNN: rings coupled by a circular convolution (weights tied along the ring).

    With recurrent_init="shift", input_init="single" and ReLU, an input pulse enters unit 0 of
    every ring and travels one unit per step around it without decay.
    """

    ring_class = RingConv
    fast_impls = ("fast", "cpp", "triton", "parallel")

    def fast_recurrence(self, x: Tensor, h0: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """The ring's fast forms, plus the fused Triton kernels (impl="triton") and, for the
        identity activation, the linear ring in parallel over time (impl="parallel")."""
        if impl not in ("triton", "parallel"):
            return super().fast_recurrence(x, h0, impl)
        drive = F.linear(x, self.input.weight, self.drive_bias())
        if impl == "parallel":
            states = linear_ring_recurrence(drive, h0, self.taps())
        else:
            from .kernels.triton_ring import triton_ring_recurrence  # loads only when asked for

            weight = self.recurrent.conv.weight
            states = triton_ring_recurrence(drive, h0, weight, self.activation_name)
        return states, states[:, -1]

    def drive_bias(self) -> Tensor:
        return self.input.bias + self.recurrent.conv.bias.repeat_interleave(self.n_hid)

    def taps(self) -> Tensor:
        return self.recurrent.conv.weight.permute(2, 0, 1)
