"""LocalRNN: the wRNN's ring neighbourhood with untied weights at every ring position."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .init import init_ring_kernel_
from .wave import RingRNN


class LocalRingConv(nn.Module):
    """U h + b where unit i of ring c sees units i-K//2..i+K//2 of every ring, own weights per i.

    weight: (n_ch, n_ch, K, n_hid), bias: (n_ch, n_hid); with every position equal this is the
    circular convolution of RingConv.
    """

    def __init__(
        self, n_hid: int, n_ch: int, kernel_size: int, init: str, style: str = "paper"
    ) -> None:
        super().__init__()
        self.n_hid, self.n_ch, self.kernel_size = n_hid, n_ch, kernel_size
        self.weight = nn.Parameter(torch.empty(n_ch, n_ch, kernel_size, n_hid))
        self.bias = nn.Parameter(torch.empty(n_ch, n_hid))
        init_ring_kernel_(self.weight, self.bias, init, style)

    def forward(self, h: Tensor) -> Tensor:
        pad = self.kernel_size // 2
        rings = F.pad(h.view(-1, self.n_ch, self.n_hid), (pad, pad), mode="circular")
        patches = rings.unfold(2, self.kernel_size, 1)  # (B, C_in, N, K)
        out = torch.einsum("bink,oikn->bon", patches, self.weight) + self.bias
        return out.reshape(h.shape)


class LocalRNN(RingRNN):
    """Locally connected rings (the connectivity ablation); same arguments as WaveRNN."""

    ring_class = LocalRingConv
    fast_impls = ("fast", "cpp")

    def drive_bias(self) -> Tensor:
        return self.input.bias + self.recurrent.bias.flatten()

    def taps(self) -> Tensor:
        return self.recurrent.weight.permute(2, 3, 0, 1)  # (K, N, C_out, C_in)
