"""A sequence model: a recurrent layer followed by a readout of its states."""

import torch
from torch import Tensor, nn

from ..nn.options import check_choice, check_positive

READOUTS = ("linear", "mlp")
READ_FROM = ("last", "all")


def make_readout(kind: str, hidden_size: int, output_size: int, mlp_hidden: int) -> nn.Module:
    """linear: W h; mlp: the paper's Linear(H, mlp_hidden)-ReLU-Linear(mlp_hidden, out)."""
    check_choice("readout", kind, READOUTS)
    if kind == "linear":
        return nn.Linear(hidden_size, output_size)
    return nn.Sequential(
        nn.Linear(hidden_size, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, output_size)
    )


def batch_innermost(states: Tensor) -> bool:
    """Whether (B, T, H) states are a view of time-major (T, H, B) storage, as the fast ring
    forms return them."""
    return states.shape[0] > 1 and states.stride(0) == 1


def read_time_major(readout: nn.Module, states: Tensor) -> Tensor:
    """readout of every step of states (T, H, B) as (B, T, out), computed in that layout.

    Each Linear is a batched product W @ states[t], so neither the states nor their gradient
    (which arrives (T, H, B), as the fast forms take it) is ever transposed; only the readout's
    small (T, out, B) result is.
    """
    for module in readout if isinstance(readout, nn.Sequential) else [readout]:
        if isinstance(module, nn.Linear):
            weight = module.weight.expand(states.shape[0], *module.weight.shape)
            states = torch.baddbmm(module.bias[:, None], weight, states)
        else:
            states = module(states)
    return states.permute(2, 0, 1)


class SequenceModel(nn.Module):
    """layer + readout. read_from="last" maps (B, T, I) to (B, out); "all" to (B, T, out).

    The last state is read as the layer's own second output (the fast forms return it as a
    tensor of its own, so no full-size gradient of the states is built); every step is read in
    the layout the layer stores its states in (see read_time_major).
    """

    def __init__(
        self,
        layer: nn.Module,
        output_size: int,
        readout: str = "linear",
        read_from: str = "last",
        mlp_hidden: int = 100,
    ) -> None:
        super().__init__()
        self.read_from = check_choice("read_from", read_from, READ_FROM)
        self.layer = layer
        self.readout = make_readout(
            readout, layer.hidden_size, check_positive("output_size", output_size), mlp_hidden
        )

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        states, last = self.layer(x, h0)
        if self.read_from == "last":
            return self.readout(last)
        if batch_innermost(states):
            return read_time_major(self.readout, states.permute(1, 2, 0))
        return self.readout(states)
