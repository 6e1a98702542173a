"""Names the layers accept and the checks that turn bad arguments into clear errors."""

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

RECURRENT_INITS = ("shift", "identity", "random")
INPUT_INITS = ("single", "normal", "default")


def identity(x: Tensor) -> Tensor:
    """The identity activation (a linear RNN)."""
    return x


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "identity": identity,
}


def check_choice(arg: str, value: str, allowed: Iterable[str]) -> str:
    """Return `value` if it is one of `allowed`, else raise a ValueError naming `arg`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{arg}={value!r} is not allowed; choose one of {', '.join(allowed)}")
    return value


def check_positive(arg: str, value: int) -> int:
    """Return `value` if it is a positive int, else raise a ValueError naming `arg`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return value


def check_real(arg: str, value: float, low: float = 0.0, high: float = math.inf) -> float:
    """Return `value` if it is a number with low < value <= high, else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        allowed = f"in ({low}, {high}]" if high < math.inf else f"> {low}"
        raise ValueError(f"{arg} must be a number {allowed}, got {value!r}")
    return float(value)


def check_sequence(x: Tensor, input_size: int) -> None:
    """Raise a ValueError unless x is a non-empty batch-first sequence of width input_size."""
    if x.dim() != 3 or x.shape[-1] != input_size or x.shape[1] < 1:
        raise ValueError(
            f"expected input of shape (batch, time >= 1, {input_size}), got {tuple(x.shape)}"
        )


def check_state(h0: Tensor, batch: int, hidden_size: int) -> None:
    """Raise a ValueError unless h0 has shape (batch, hidden_size)."""
    if tuple(h0.shape) != (batch, hidden_size):
        raise ValueError(f"expected h0 of shape ({batch}, {hidden_size}), got {tuple(h0.shape)}")
