"""Onset decoding: from one snapshot of the state, how many steps ago an impulse arrived, and where.

Each example feeds a single one-hot impulse (random input dimension) `delay` steps before the
read time; a linear decoder (ridge least squares on one-hot targets) is fit on the snapshots of
a training split and scored on held-out ones.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .record import record_states

RIDGE = 1e-3


@dataclass(frozen=True)
class OnsetDecoding:
    """Held-out accuracies of the delay and input-dimension decoders, with their chance levels."""

    delay_accuracy: float
    channel_accuracy: float
    delay_chance: float
    channel_chance: float
    max_delay: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def impulse_snapshots(layer: nn.Module, delays: Tensor, channels: Tensor, read_time: int) -> Tensor:
    """States (n, hidden) at `read_time` after one impulse per example at read_time - delay."""
    x = torch.zeros(len(delays), read_time + 1, layer.input_size)
    x[torch.arange(len(delays)), read_time - delays, channels] = 1.0
    return record_states(layer, x)[:, read_time].flatten(1).double()


def fit_ridge(features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Standardise features and fit W by ridge least squares on targets (n, outputs); returns
    (mean, scale, W) with W acting on [standardised features, 1]."""
    mean, scale = features.mean(0), features.std(0).clamp_min(1e-8)
    design = F.pad((features - mean) / scale, (0, 1), value=1.0)
    gram = design.T @ design + RIDGE * torch.eye(design.shape[1], dtype=torch.float64)
    return mean, scale, torch.linalg.solve(gram, design.T @ targets.double())


def fit_linear(features: Tensor, labels: Tensor, classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """fit_ridge on the one-hot targets of integer labels."""
    return fit_ridge(features, F.one_hot(labels, classes))


def predict(features: Tensor, fit: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The decoder outputs (n, outputs) of a fit_ridge fit on new features."""
    mean, scale, weight = fit
    return F.pad((features - mean) / scale, (0, 1), value=1.0) @ weight


def accuracy(features: Tensor, labels: Tensor, classes: int, split: int) -> float:
    """Held-out accuracy of a linear decoder fit on the first `split` examples."""
    fit = fit_linear(features[:split], labels[:split], classes)
    return float((predict(features[split:], fit).argmax(1) == labels[split:]).double().mean())


def training_split(examples: int, train_fraction: float) -> int:
    """How many of `examples` the decoder is fit on; the rest are held out (both non-empty)."""
    split = int(examples * train_fraction)
    if not 0 < split < examples:
        raise ValueError(
            f"examples ({examples}) x train_fraction ({train_fraction}) must leave both a "
            "training and a held-out split"
        )
    return split


def onset_decoding(
    layer: nn.Module,
    max_delay: int,
    examples: int = 1024,
    train_fraction: float = 0.75,
    seed: int = 0,
) -> OnsetDecoding:
    """Decode delay in [0, max_delay) and the impulse's input dimension from one state snapshot."""
    if max_delay < 1:
        raise ValueError(f"max_delay must be >= 1, got {max_delay}")
    split = training_split(examples, train_fraction)
    generator = torch.Generator().manual_seed(seed)
    delays = torch.randint(0, max_delay, (examples,), generator=generator)
    channels = torch.randint(0, layer.input_size, (examples,), generator=generator)
    snapshots = impulse_snapshots(layer, delays, channels, read_time=max_delay - 1)
    return OnsetDecoding(
        delay_accuracy=accuracy(snapshots, delays, max_delay, split),
        channel_accuracy=accuracy(snapshots, channels, layer.input_size, split),
        delay_chance=1.0 / max_delay,
        channel_chance=1.0 / layer.input_size,
        max_delay=max_delay,
    )
