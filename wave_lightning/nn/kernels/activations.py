"""In-place activations and their derivatives from the output, for the hand-written BPTT."""

import torch
from torch import Tensor

# the integer each compiled kernel (C++, Triton) takes for an activation
ACTIVATION_CODES = {"relu": 0, "tanh": 1, "identity": 2}


def activate_(z: Tensor, name: str) -> Tensor:
    """Apply the named activation to z in place (relu, tanh or identity) and return z."""
    if name == "relu":
        return z.relu_()
    if name == "tanh":
        return z.tanh_()
    return z


def times_derivative_(grad: Tensor, out: Tensor, name: str) -> Tensor:
    """grad *= act'(z), from out = act(z), in place, by the kernels torch's own backward uses."""
    if name == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
    if name == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)
    return grad
