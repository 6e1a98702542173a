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


def read_time_major(modules: list[nn.Module], states: Tensor) -> Tensor:
    """The readout modules applied to every step of states (T, H, B), in that layout.

    Each Linear is a batched product W @ states[t], so neither the states nor their gradient
    (which arrives (T, H, B), as the fast forms take it) is ever transposed.
    """
    for module in modules:
        if isinstance(module, nn.Linear):
            weight = module.weight.expand(states.shape[0], *module.weight.shape)
            states = torch.baddbmm(module.bias[:, None], weight, states)
        else:
            states = module(states)
    return states


class SequenceModel(nn.Module):
    """layer + readout. read_from="last" maps (B, T, I) to (B, out); "all" to (B, T, out).

    The last state is read as the layer's own second output (the fast forms return it as a
    tensor of its own, so no full-size gradient of the states is built). Every step is read by
    the layer inside its loop where its form can (`read_every_step`: the first Linear of the
    readout), else in the layout the layer stores its states in (see read_time_major).
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
        if self.read_from == "last":
            return self.readout(self.layer(x, h0)[1])
        modules = list(self.readout) if isinstance(self.readout, nn.Sequential) else [self.readout]
        read = getattr(self.layer, "read_every_step", None)
        first = read(x, modules[0], h0) if read is not None else None
        if first is not None:  # the layer read every step inside its loop
            return read_time_major(modules[1:], first).permute(2, 0, 1)
        states, _ = self.layer(x, h0)
        if batch_innermost(states):
            return read_time_major(modules, states.permute(1, 2, 0)).permute(2, 0, 1)
        return self.readout(states)
