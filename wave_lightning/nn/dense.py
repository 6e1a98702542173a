"""IRNN: a dense recurrent matrix (Le et al. 2015), with the paper's shift (Sigma) init."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SimpleRecurrence
from .init import INIT_STYLES, authors_dense_input, init_input_
from .kernels.fast_dense import dense_recurrence
from .options import RECURRENT_INITS, check_choice, check_positive


@torch.no_grad()
def init_dense_(layer: nn.Linear, init: str) -> None:
    """identity: U = I; shift: U moves unit i to i+1 around one ring (a permutation); both with
    zero bias. random: nn.Linear's default."""
    check_choice("recurrent_init", init, RECURRENT_INITS)
    if init == "random":
        layer.reset_parameters()
        return
    eye = torch.eye(layer.weight.shape[0])
    layer.weight.copy_(eye.roll(1, dims=0) if init == "shift" else eye)
    layer.bias.zero_()


class IRNN(SimpleRecurrence):
    """Dense simple RNN; recurrent_init "identity" is the iRNN, "shift" the paper's Sigma-init.
    init_style "authors": any input init but V-init draws N(0, 0.001^2) with nn.Linear's default
    bias, as the authors' copy and adding scripts do (nn/init.py)."""

    fast_impls = ("fast",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        recurrent_init: str = "identity",
        input_init: str = "default",
        activation: str = "relu",
        freeze_recurrent: bool = False,
        freeze_input: bool = False,
        init_style: str = "paper",
        impl: str = "auto",
    ) -> None:
        check_positive("hidden_size", hidden_size)
        check_choice("init_style", init_style, INIT_STYLES)
        super().__init__(
            input_size, hidden_size, hidden_size, input_init, activation, freeze_input, impl
        )
        if init_style == "authors":  # the authors' iRNN scripts: nn/init.py, docs/fidelity.md
            init_input_(self.input, authors_dense_input(input_init), hidden_size, init_style)
        self.recurrent = nn.Linear(hidden_size, hidden_size)
        init_dense_(self.recurrent, recurrent_init)
        self.recurrent.requires_grad_(not freeze_recurrent)

    def fast_recurrence(self, x: Tensor, h0: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """The hand-written BPTT form, the recurrent bias folded into the input bias."""
        drive = F.linear(x, self.input.weight, self.input.bias + self.recurrent.bias)
        return dense_recurrence(drive, h0, self.recurrent.weight, self.activation_name)
