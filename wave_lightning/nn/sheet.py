"""WaveSheetRNN: 2-D sheets of hidden units on a torus, coupled by a circular Conv2d (tied).

The 2-D counterpart of WaveRNN: n_ch sheets of height x width units (hidden_size = n_ch * H * W,
stored channel by channel, each sheet row by row). A shift init moves each channel's activity
one unit per step in its direction, wrapping at the edges.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SimpleRecurrence
from .kernels.fast_dense import dense_recurrence
from .options import RECURRENT_INITS, check_choice, check_positive

# (dy, dx) of one step: rows grow downwards, columns to the right.
STEPS = {"right": (0, 1), "down": (1, 0), "left": (0, -1), "up": (-1, 0)}
DIRECTIONS = (*STEPS, "cycle")
# Above this many hidden units "auto" runs the reference form: the fast form's dense matrix
# (hidden_size^2 entries) would outgrow the convolution it replaces.
MAX_FAST_HIDDEN = 4096


def channel_steps(direction: str, n_ch: int) -> list[tuple[int, int]]:
    """Each channel's (dy, dx): one direction for all, or "cycle": right, down, left, up, ..."""
    check_choice("direction", direction, DIRECTIONS)
    if direction != "cycle":
        return [STEPS[direction]] * n_ch
    cycle = list(STEPS.values())
    return [cycle[c % len(cycle)] for c in range(n_ch)]


@torch.no_grad()
def init_sheet_kernel_(conv: nn.Conv2d, init: str, direction: str) -> None:
    """Initialise a sheet's Conv2d (C, C, K, K) and bias in place.

    shift: channel c copies the unit one step behind it in its direction (tap (p - dy, p - dx),
    p = K // 2), so activity moves one unit per step; identity: the centre tap; both with zero
    bias and zero cross-channel taps. random: PyTorch's Conv2d default.
    """
    check_choice("recurrent_init", init, RECURRENT_INITS)
    steps = channel_steps(direction, conv.in_channels)
    if init == "random":
        conv.reset_parameters()
        return
    pad = conv.kernel_size[0] // 2
    conv.weight.zero_()
    conv.bias.zero_()
    for c, (dy, dx) in enumerate(steps):
        if init == "shift":
            conv.weight[c, c, pad - dy, pad - dx] = 1.0
        else:
            conv.weight[c, c, pad, pad] = 1.0


def check_sheet(height: int, width: int, n_ch: int, kernel_size: int) -> None:
    """Raise a ValueError unless the sheet sizes and the kernel fit together."""
    for name, value in (("height", height), ("width", width), ("n_ch", n_ch)):
        check_positive(name, value)
    check_positive("kernel_size", kernel_size)
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
    if min(height, width) < kernel_size:
        raise ValueError(
            f"height ({height}) and width ({width}) must be at least kernel_size ({kernel_size})"
        )


class SheetConv(nn.Module):
    """U h + b for states (B, n_ch * H * W): a circular Conv2d over each torus sheet."""

    def __init__(
        self, height: int, width: int, n_ch: int, kernel_size: int, init: str, direction: str
    ) -> None:
        super().__init__()
        self.shape = (n_ch, height, width)
        self.conv = nn.Conv2d(
            n_ch, n_ch, kernel_size, padding=kernel_size // 2, padding_mode="circular"
        )
        init_sheet_kernel_(self.conv, init, direction)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(h.view(-1, *self.shape)).view(h.shape)

    def matrix(self) -> Tensor:
        """U as a dense (hidden, hidden) matrix, differentiable in the conv weight: column j is
        the convolution (without bias) of the j-th unit impulse."""
        size = math.prod(self.shape)
        weight = self.conv.weight
        basis = torch.eye(size, dtype=weight.dtype, device=weight.device).view(size, *self.shape)
        pad = self.conv.kernel_size[0] // 2
        columns = F.conv2d(F.pad(basis, (pad,) * 4, mode="circular"), weight)
        return columns.reshape(size, size).t()


class WaveSheetRNN(SimpleRecurrence):
    """n_ch torus sheets of height x width units, tied circular Conv2d coupling.

    impl "reference" runs the Conv2d step by step; "fast" runs the dense hand-written BPTT of
    IRNN (nn/fast_dense.py) with U = the convolution as a matrix (gradients reach the kernel
    through that matrix); "auto" is "fast" up to MAX_FAST_HIDDEN units, else "reference".
    direction (shift init): right, down, left, up, or cycle (channel c takes the c-th of
    right, down, left, up, cycling).
    """

    fast_impls = ("fast",)

    def __init__(
        self,
        input_size: int,
        height: int,
        width: int,
        n_ch: int = 1,
        kernel_size: int = 3,
        recurrent_init: str = "shift",
        direction: str = "right",
        input_init: str = "single",
        activation: str = "relu",
        freeze_recurrent: bool = False,
        freeze_input: bool = False,
        impl: str = "auto",
    ) -> None:
        check_sheet(height, width, n_ch, kernel_size)
        hidden = n_ch * height * width
        super().__init__(
            input_size, hidden, height * width, input_init, activation, freeze_input, impl
        )
        self.height, self.width, self.n_ch, self.kernel_size = height, width, n_ch, kernel_size
        self.direction = direction
        self.recurrent = SheetConv(height, width, n_ch, kernel_size, recurrent_init, direction)
        self.recurrent.requires_grad_(not freeze_recurrent)

    def resolve_impl(self, x: Tensor) -> str:
        """ "auto": "fast" up to MAX_FAST_HIDDEN hidden units, else "reference"."""
        if self.impl == "auto" and self.hidden_size > MAX_FAST_HIDDEN:
            return "reference"
        return super().resolve_impl(x)

    def fast_recurrence(self, x: Tensor, h0: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """The dense BPTT form, the sheet bias folded into the input bias."""
        bias = self.input.bias + self.recurrent.conv.bias.repeat_interleave(
            self.height * self.width
        )
        drive = F.linear(x, self.input.weight, bias)
        return dense_recurrence(drive, h0, self.recurrent.matrix(), self.activation_name)
