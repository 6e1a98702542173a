"""A sequence model: a recurrent layer followed by a readout of its states."""

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


class SequenceModel(nn.Module):
    """layer + readout. read_from="last" maps (B, T, I) to (B, out); "all" to (B, T, out)."""

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

    def forward(self, x: Tensor) -> Tensor:
        states, last = self.layer(x)
        return self.readout(states if self.read_from == "all" else last)
