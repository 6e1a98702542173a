"""Initialisations of the paper: shift / identity recurrent kernels and the single-unit input.

Each takes a `style`: "paper" (the paper's text, the default) or "authors" (what the authors'
published code draws where it differs; docs/fidelity.md lists every difference).
"""

import math

import torch
from torch import Tensor, nn

from .options import INPUT_INITS, RECURRENT_INITS, check_choice

INIT_STYLES = ("paper", "authors")


@torch.no_grad()
def default_uniform_(tensor: Tensor, fan_in: int) -> None:
    """PyTorch's default bias (and Conv1d weight) draw: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    tensor.uniform_(-bound, bound)


@torch.no_grad()
def init_ring_kernel_(weight: Tensor, bias: Tensor, init: str, style: str = "paper") -> None:
    """Initialise a ring kernel of shape (C, C, K) (tied) or (C, C, K, N) (untied) and its bias.

    shift: each channel's kernel moves activity one unit up the ring per step (tap K//2 - 1);
    identity: each channel keeps its activity in place (tap K//2); both with zero cross-channel
    taps and zero bias. random: PyTorch's Conv1d default, uniform in +-1/sqrt(C*K).
    style="authors": a tied ring's shift / identity keeps Conv1d's default random bias, and an
    untied ring's random init is xavier-uniform (fans C*K: one position's inputs and outputs)
    with zero bias.
    """
    check_choice("recurrent_init", init, RECURRENT_INITS)
    check_choice("init_style", style, INIT_STYLES)
    n_ch, kernel_size = weight.shape[1], weight.shape[2]
    fan = n_ch * kernel_size
    authors, untied = style == "authors", weight.dim() == 4
    if init == "random" and authors and untied:
        weight.uniform_(-math.sqrt(6.0 / (2 * fan)), math.sqrt(6.0 / (2 * fan)))
        bias.zero_()
        return
    if init == "random":
        default_uniform_(weight, fan)
        default_uniform_(bias, fan)
        return
    if init == "shift" and kernel_size < 3:
        raise ValueError(f"recurrent_init='shift' needs kernel_size >= 3, got {kernel_size}")
    tap = kernel_size // 2 - (1 if init == "shift" else 0)
    weight.zero_()
    if authors and not untied:
        default_uniform_(bias, fan)
    else:
        bias.zero_()
    for c in range(n_ch):
        weight[c, c, tap] = 1.0


@torch.no_grad()
def init_input_(layer: nn.Linear, init: str, ring_size: int, style: str = "paper") -> None:
    """Initialise the input projection V in place.

    single: zero weight and bias except that every input feeds unit 0 of every ring with weight 1
    (the paper's V-init); normal: weight ~ N(0, 0.001^2), zero bias (style="authors": nn.Linear's
    default bias, as the authors' code keeps it); default: nn.Linear's own.
    """
    check_choice("input_init", init, INPUT_INITS)
    check_choice("init_style", style, INIT_STYLES)
    if init == "default":
        layer.reset_parameters()
        return
    if init == "normal":
        layer.weight.normal_(0.0, 1e-3)
        if style == "authors":
            default_uniform_(layer.bias, layer.in_features)
        else:
            layer.bias.zero_()
        return
    layer.bias.zero_()
    layer.weight.zero_()
    layer.weight[::ring_size] = 1.0


def authors_dense_input(init: str) -> str:
    """The input init the authors' iRNN scripts (copy, adding) use for a configured one: V-init
    stays, anything else is N(0, 0.001^2) weights with nn.Linear's default bias ("normal")."""
    return init if init == "single" else "normal"
