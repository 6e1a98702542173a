"""Spike-train decoding: from ONE snapshot of the state, every (input channel, onset) pair.

Each example is a spike train of `steps` steps on every input channel, with exactly `spikes`
spikes per channel at random distinct times. The snapshot is the state at the last step; the
target is the whole input history as a multi-label vector over channels x delays (delay d = the
spike arrived d steps before the read time). A linear decoder (ridge least squares, one output
per label, thresholded at 1/2; onset.py's fit) is fit on a training split and scored on the
held-out examples. Later spikes must not overwrite earlier ones for the decoding to be exact.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Generator, Tensor, nn

from .onset import fit_ridge, predict, training_split
from .record import record_states


@dataclass(frozen=True)
class SpikeDecoding:
    """Held-out scores of the (channel, delay) labels of one spike count.

    accuracy: labels right; balanced_accuracy: mean of the hit rate and the correct-rejection
    rate (chance 0.5 whatever the spike density); exact: examples with every label right;
    delay_balanced_accuracy[d]: balanced accuracy of delay d over all channels; chance: the
    accuracy of always answering "no spike".
    """

    spikes: int
    channels: int
    steps: int
    accuracy: float
    balanced_accuracy: float
    exact: float
    chance: float
    delay_balanced_accuracy: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def spike_trains(
    n: int, steps: int, channels: int, spikes: int, generator: Generator | None = None
) -> Tensor:
    """n sequences (n, steps, channels) of 0/1 with exactly `spikes` spikes per channel."""
    if not 1 <= spikes <= steps:
        raise ValueError(f"spikes must be in [1, steps={steps}], got {spikes}")
    ranks = torch.rand(n, channels, steps, generator=generator).argsort(-1)
    trains = (ranks < spikes).float()  # `spikes` distinct random times per (example, channel)
    return trains.transpose(1, 2).contiguous()


def history_targets(x: Tensor) -> Tensor:
    """The labels of inputs x (n, T, C): (n, C * T), label c * T + d = spike on c at T - 1 - d."""
    return x.flip(1).transpose(1, 2).flatten(1)


def balanced(predicted: Tensor, truth: Tensor) -> float:
    """Mean of the hit rate and the correct-rejection rate (a missing class drops out)."""
    rates = [
        (predicted[truth == value] == value).double().mean()
        for value in (True, False)
        if (truth == value).any()
    ]
    return float(torch.stack(rates).mean())


def score(predicted: Tensor, truth: Tensor, spikes: int, channels: int) -> SpikeDecoding:
    """Scores of boolean predictions against targets (n, C * T)."""
    steps = truth.shape[1] // channels
    by_delay = zip(
        predicted.view(-1, channels, steps).unbind(2),
        truth.view(-1, channels, steps).unbind(2),
        strict=True,
    )
    return SpikeDecoding(
        spikes=spikes,
        channels=channels,
        steps=steps,
        accuracy=float((predicted == truth).double().mean()),
        balanced_accuracy=balanced(predicted, truth),
        exact=float((predicted == truth).all(1).double().mean()),
        chance=1.0 - spikes / steps,
        delay_balanced_accuracy=[balanced(p, t) for p, t in by_delay],
    )


def decode_snapshots(
    snapshots: Tensor, targets: Tensor, spikes: int, channels: int, train_fraction: float = 0.75
) -> SpikeDecoding:
    """Fit the linear decoder on the first examples of snapshots (n, F) -> targets (n, C T),
    score it on the rest."""
    split = training_split(len(snapshots), train_fraction)
    fit = fit_ridge(snapshots[:split].double(), targets[:split])
    predicted = predict(snapshots[split:].double(), fit) > 0.5
    return score(predicted, targets[split:] > 0.5, spikes, channels)


def spike_decoding(
    layer: nn.Module,
    spikes: int,
    steps: int,
    examples: int = 2048,
    train_fraction: float = 0.75,
    seed: int = 0,
) -> SpikeDecoding:
    """Decode every (channel, onset) of `spikes` spikes per input channel over `steps` steps
    from the layer's state at the last step."""
    generator = torch.Generator().manual_seed(seed)
    x = spike_trains(examples, steps, layer.input_size, spikes, generator)
    snapshots = record_states(layer, x)[:, -1].flatten(1)
    return decode_snapshots(snapshots, history_targets(x), spikes, layer.input_size, train_fraction)


def spike_table(
    layer: nn.Module, spike_counts: Sequence[int], steps: int, examples: int = 2048, seed: int = 0
) -> list[SpikeDecoding]:
    """spike_decoding for every spike count."""
    return [spike_decoding(layer, k, steps, examples, seed=seed) for k in spike_counts]


def write_table(rows: dict[str, list[SpikeDecoding]], path: str | Path, meta: dict) -> Path:
    """spikes.json: meta and, per layer, one entry per spike count."""
    table = {name: [row.as_dict() for row in results] for name, results in rows.items()}
    path = Path(path)
    path.write_text(json.dumps({**meta, "layers": table}, indent=2) + "\n")
    return path
