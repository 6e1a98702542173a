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
from .report import analyze, write_report

INPUTS = ("data", "impulses")


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
    add("--inputs", choices=INPUTS, default="data", help="drive with the run's data or impulses")
    add("--stage", choices=STAGES, default="test", help="data split for --inputs data")
    add("--examples", type=count(1), default=32, help="sequences recorded (the FFT sums over them)")
    add("--steps", type=count(2), help="impulse sequence length (default: the task's seq_len)")
    add("--impulses", type=count(1), default=3, help="impulses per sequence for --inputs impulses")
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
    steps = args.steps or seq_len or 2 * ring_shape(layer)[1]
    generator = torch.Generator().manual_seed(args.seed)
    return impulse_inputs(args.examples, steps, layer.input_size, args.impulses, generator)


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
