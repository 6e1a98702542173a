"""Spike-train decoding: from ONE snapshot of the state, every (input channel, onset) pair.

Each example is a spike train of `steps` steps on every input channel, with exactly `spikes`
spikes per channel at random distinct times. The snapshot is the state at the last step; the
target is the whole input history as a multi-label vector over channels x delays (delay d = the
spike arrived d steps before the read time). A linear decoder (ridge least squares, one output
per label, thresholded at 1/2; onset.py's fit) is fit on a training split and scored on the
held-out examples. Later spikes must not overwrite earlier ones for the decoding to be exact.
"""

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Generator, Tensor, nn

from ..nn import IRNN, LocalRNN, WaveRNN, WaveSheetRNN
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


def layers_at_init(channels: int, side: int, n_ch: int, seed: int = 0) -> dict[str, nn.Module]:
    """The compared layers at init, each of n_ch * side^2 hidden units: wRNN and the untied ring
    (n_ch rings of side^2 units, shift init), iRNN (identity init), the 2-D sheet (n_ch sheets
    of side x side, shift along cycling directions); rings and sheet with input_init single
    (the paper's V-init) and normal."""
    torch.manual_seed(seed)
    ring = dict(n_hid=side * side, n_ch=n_ch)
    sheet = dict(height=side, width=side, n_ch=n_ch, direction="cycle")
    layers: dict[str, nn.Module] = {"irnn": IRNN(channels, n_ch * side * side)}
    for init in ("single", "normal"):
        layers[f"wrnn_{init}"] = WaveRNN(channels, input_init=init, **ring)
        layers[f"local_{init}"] = LocalRNN(channels, input_init=init, **ring)
        layers[f"sheet_{init}"] = WaveSheetRNN(channels, input_init=init, **sheet)
    return layers


def write_table(rows: dict[str, list[SpikeDecoding]], path: str | Path, meta: dict) -> Path:
    """spikes.json: meta and, per layer, one entry per spike count."""
    table = {name: [row.as_dict() for row in results] for name, results in rows.items()}
    path = Path(path)
    path.write_text(json.dumps({**meta, "layers": table}, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """`python -m wave_lightning.analysis.spikes`: the table of the compared layers at init."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="JSON file written")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--side", type=int, default=6, help="sheet side; rings have side^2 units")
    parser.add_argument("--n-ch", type=int, default=3, help="rings / sheets")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--spikes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    layers = layers_at_init(args.channels, args.side, args.n_ch, args.seed)
    rows = {
        name: spike_table(layer, args.spikes, args.steps, args.examples, args.seed)
        for name, layer in layers.items()
    }
    write_table(rows, args.out, {"at": "init", **vars(args)})
    for name, results in rows.items():
        cells = ", ".join(f"{r.spikes}: {r.balanced_accuracy:.3f}/{r.exact:.3f}" for r in results)
        print(f"{name}: spikes -> balanced acc / exact: {cells}")


if __name__ == "__main__":
    main()
