"""Initialisations of the paper: shift / identity recurrent kernels and the single-unit input."""

import math

import torch
from torch import Tensor, nn

from .options import INPUT_INITS, RECURRENT_INITS, check_choice


@torch.no_grad()
def init_ring_kernel_(weight: Tensor, bias: Tensor, init: str) -> None:
    """Initialise a ring kernel of shape (C, C, K, ...) and its bias in place.

    shift: each channel's kernel moves activity one unit up the ring per step (tap K//2 - 1);
    identity: each channel keeps its activity in place (tap K//2); both with zero bias and zero
    cross-channel taps. random: PyTorch's Conv1d default, uniform in +-1/sqrt(C*K).
    """
    check_choice("recurrent_init", init, RECURRENT_INITS)
    n_ch, kernel_size = weight.shape[1], weight.shape[2]
    if init == "random":
        bound = 1.0 / math.sqrt(n_ch * kernel_size)
        weight.uniform_(-bound, bound)
        bias.uniform_(-bound, bound)
        return
    if init == "shift" and kernel_size < 3:
        raise ValueError(f"recurrent_init='shift' needs kernel_size >= 3, got {kernel_size}")
    tap = kernel_size // 2 - (1 if init == "shift" else 0)
    weight.zero_()
    bias.zero_()
    for c in range(n_ch):
        weight[c, c, tap] = 1.0


@torch.no_grad()
def init_input_(layer: nn.Linear, init: str, ring_size: int) -> None:
    """Initialise the input projection V in place.

    single: zero weight and bias except that every input feeds unit 0 of every ring with weight 1
    (the paper's V-init); normal: weight ~ N(0, 0.001^2), zero bias; default: nn.Linear's own.
    """
    check_choice("input_init", init, INPUT_INITS)
    if init == "default":
        layer.reset_parameters()
        return
    layer.bias.zero_()
    if init == "normal":
        layer.weight.normal_(0.0, 1e-3)
    else:
        layer.weight.zero_()
        layer.weight[::ring_size] = 1.0
