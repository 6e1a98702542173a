"""`wave-lightning analyze --ckpt PATH`: the figures and wave measures of a trained checkpoint."""

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoints import CheckpointError
from ..errors import fail
from ..tasks import load_task
from .inputs import STAGES, data_batch, load_datamodule, run_config_path
from .record import impulse_inputs, ring_shape
from .report import analyze, default_max_delay, write_report
from .sheets import write_sheet_report
from .spikes import spike_table, spike_trains, write_table

INPUTS = ("data", "impulses", "spikes")


def count(minimum: int):
    """An argparse type: an integer of at least `minimum`, else a message naming the bound."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wave-lightning analyze",
        description="Record a checkpoint's hidden states and write space-time and 2D FFT figures, "
        "an animated GIF of the rings, and measures.json (speed, wave score, onset decoding).",
    )
    add = parser.add_argument
    add("--ckpt", required=True, help="checkpoint written by `wave-lightning fit`")
    add("--config", help="run config whose data drives the layer (default <run>/config.yaml)")
    add("--out", help="output folder (default <run>/analysis/<checkpoint name>)")
    add("--inputs", choices=INPUTS, default="data", help="the run's data, impulses or spike trains")
    add("--stage", choices=STAGES, default="test", help="data split for --inputs data")
    add("--examples", type=count(1), default=32, help="sequences recorded (the FFT sums over them)")
    add(
        "--steps", type=count(2), help="impulse / spike train length (default: seq_len / ring size)"
    )
    add("--impulses", type=count(1), default=3, help="impulses per sequence for --inputs impulses")
    add(
        "--spikes",
        type=count(1),
        nargs="+",
        default=[1, 2, 4],
        help="spikes per channel decoded for --inputs spikes (the first drives the figures) "
        "over --steps steps (default: the ring size, at most 64)",
    )
    add("--spike-examples", type=count(2), default=1024, help="spike decoding examples")
    add("--example", type=count(0), default=0, help="which recorded sequence the plots show")
    add("--max-rings", type=count(1), default=6, help="rings drawn (all are measured)")
    add("--onset-examples", type=count(0), default=1024, help="onset decoding examples (0: skip)")
    add("--max-delay", type=count(1), help="onset delays 0..max-delay-1 (default: ring size)")
    add("--seed", type=int, default=0, help="seed of impulses, shuffles and onset decoding")
    return parser


def default_out(ckpt: Path) -> Path:
    """<run_dir>/analysis/<checkpoint stem>."""
    return ckpt.resolve().parent.parent / "analysis" / ckpt.stem


def driving_inputs(args: argparse.Namespace, layer: nn.Module, seq_len: int | None) -> Tensor:
    """The batch that drives the layer: the run's data, or random impulses."""
    if args.inputs == "data":
        config = args.config or run_config_path(args.ckpt)
        return data_batch(load_datamodule(config), args.examples, args.stage)
    generator = torch.Generator().manual_seed(args.seed)
    if args.inputs == "spikes":
        steps = spike_window(args, layer)
        return spike_trains(args.examples, steps, layer.input_size, args.spikes[0], generator)
    steps = args.steps or seq_len or 2 * ring_shape(layer)[1]
    return impulse_inputs(args.examples, steps, layer.input_size, args.impulses, generator)


def spike_window(args: argparse.Namespace, layer: nn.Module) -> int:
    """Steps of the spike trains: --steps, else onset decoding's default (ring size, <= 64)."""
    steps = args.steps or default_max_delay(layer)
    if max(args.spikes) > steps:
        raise SystemExit(f"analyze: --spikes must not exceed the {steps} steps, got {args.spikes}")
    return steps


def write_spikes(args: argparse.Namespace, layer: nn.Module, out: Path, meta: dict) -> Path:
    """spikes.json: the spike decoding table of the layer over --spikes, printed as it goes."""
    steps = spike_window(args, layer)
    rows = spike_table(layer, args.spikes, steps, args.spike_examples, args.seed)
    for row in rows:
        print(
            f"spike decoding, {row.spikes} per channel over {steps} steps: balanced accuracy "
            f"{row.balanced_accuracy:.3f} (chance 0.5), all pairs right {row.exact:.3f}"
        )
    return write_table({meta["layer"]: rows}, out / "spikes.json", meta)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `wave-lightning analyze`."""
    args = build_parser().parse_args(argv)
    ckpt = Path(args.ckpt)
    try:
        task = load_task(ckpt)
    except CheckpointError as error:
        fail(error)
    layer = task.model.layer
    inputs = driving_inputs(args, layer, task.hparams.get("seq_len"))
    if not 0 <= args.example < len(inputs):
        raise SystemExit(f"analyze: --example must be in [0, {len(inputs)}), got {args.example}")
    result = analyze(layer, inputs, args.seed, args.onset_examples, args.max_delay)
    kind = type(layer).__name__
    meta = {"checkpoint": str(ckpt), "layer": kind, "inputs": args.inputs, "seed": args.seed}
    out = Path(args.out) if args.out else default_out(ckpt)
    written = write_report(result, out, meta, args.example, args.max_rings, f"{kind}: ")
    written += write_sheet_report(layer, result.states, out, args.example, f"{kind}: ")
    if args.inputs == "spikes":
        written.append(write_spikes(args, layer, out, meta))
    summary = result.summary()
    print(
        f"{kind}: speed {summary['speed']:+.3f} units/step (moving line "
        f"{summary['wave_speed']:+.3f}), wave score {summary['score']:.3f}"
    )
    if result.onset:
        onset = result.onset
        print(
            f"onset decoding: delay {onset.delay_accuracy:.3f} (chance {onset.delay_chance:.3f}), "
            f"input {onset.channel_accuracy:.3f} (chance {onset.channel_chance:.3f})"
        )
    for path in written:
        print(path)
