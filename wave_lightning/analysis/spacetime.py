"""Space-time images: one (units x time) image per ring, the paper's picture of a wave."""

from torch import Tensor


def spacetime_images(states: Tensor, example: int = 0) -> Tensor:
    """states (B, T, rings, units) -> (rings, units, T): unit along rows, time along columns."""
    if not 0 <= example < states.shape[0]:
        raise ValueError(f"example must be in [0, {states.shape[0]}), got {example}")
    return states[example].permute(1, 2, 0)
