"""The simple recurrence h_t = act(R(h_{t-1}) + d_t), written once as the reference form."""

from collections.abc import Callable

import torch
from torch import Tensor


def reference_recurrence(
    drive: Tensor,
    h0: Tensor,
    recur: Callable[[Tensor], Tensor],
    activation: Callable[[Tensor], Tensor],
) -> Tensor:
    """Run the recurrence step by step in eager PyTorch.

    drive: (B, T, H) input term V x_t + b for every step; h0: (B, H); recur: h -> U h + b_U.
    Returns the states h_1..h_T as (B, T, H). Faster forms are tested against this one.
    """
    h = h0
    states = []
    for d_t in drive.unbind(1):  # unbind, not drive[:, t]: indexing makes the backward O(T^2)
        h = activation(recur(h) + d_t)
        states.append(h)
    return torch.stack(states, dim=1)
