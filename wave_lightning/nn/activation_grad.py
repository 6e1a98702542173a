"""In-place activations and their derivatives from the output, for the hand-written BPTT."""

from torch import Tensor


def activate_(z: Tensor, name: str) -> Tensor:
    """Apply the named activation to z in place (relu, tanh or identity) and return z."""
    if name == "relu":
        return z.relu_()
    if name == "tanh":
        return z.tanh_()
    return z


def times_derivative_(grad: Tensor, out: Tensor, name: str) -> Tensor:
    """grad *= act'(z), written from out = act(z) exactly as torch's own backward does, in place."""
    if name == "relu":
        return grad.masked_fill_(out <= 0, 0.0)
    if name == "tanh":
        return grad.mul_(1.0 - out * out)
    return grad
