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


def read_time_major(modules: list[nn.Module], states: Tensor) -> Tensor:
    """The readout modules applied to every step of time-major outputs (T, F, B), in that
    layout (as a fused readout returns them): each Linear is a batched product W @ states[t], so
    neither they nor their gradient is ever transposed."""
    for module in modules:
        if isinstance(module, nn.Linear):
            weight = module.weight.expand(states.shape[0], *module.weight.shape)
            states = torch.baddbmm(module.bias[:, None], weight, states)
        else:
            states = module(states)
    return states


class SequenceModel(nn.Module):
    """layer + readout. read_from="last" maps (B, T, I) to (B, out); "all" to (B, T, out).

    The last state is read by the layer's `last_state` where it has one (else as its second
    output): the fast forms return it as a tensor of its own, so no full-size gradient of the
    states is built, and the C++ form then writes no batch-first states at all. Every step is
    read by the layer inside its loop where its form can (`read_every_step`: the first Linear
    of the readout), else from the layer's batch-first states.
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
            last = getattr(self.layer, "last_state", None)
            return self.readout(last(x, h0) if last is not None else self.layer(x, h0)[1])
        modules = list(self.readout) if isinstance(self.readout, nn.Sequential) else [self.readout]
        read = getattr(self.layer, "read_every_step", None)
        first = read(x, modules[0], h0) if read is not None else None
        if first is not None:  # the layer read every step inside its loop
            return read_time_major(modules[1:], first).permute(2, 0, 1)
        return self.readout(self.layer(x, h0)[0])
