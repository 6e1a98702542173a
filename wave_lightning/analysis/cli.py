"""`wave-lightning analyze --ckpt PATH`: the figures and wave measures of a trained checkpoint."""

import argparse
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from torch import Tensor, nn

from ..run.folder import RunFolder
from ..tasks import load_task
from .inputs import STAGES, data_batch, driving_inputs, load_datamodule, run_config_path
from .options import ANALYZE_DEFAULTS, INPUTS, MINIMUM, AnalysisOptions
from .report import analyze, write_report
from .sheets import write_sheet_report
from .spikes import spike_table, write_table


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`, else a message naming the bound."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_count(parser: argparse.ArgumentParser, name: str, help: str, **kwargs) -> None:
    """--NAME for the AnalysisOptions count `name`: its least value and analyze's default."""
    flag = "--" + name.replace("_", "-")
    default = getattr(ANALYZE_DEFAULTS, name)
    parser.add_argument(flag, type=count(MINIMUM[name]), default=default, help=help, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wave-lightning analyze",
        description="Record a checkpoint's hidden states and write space-time and 2D FFT figures, "
        "an animated GIF of the rings, and measures.json (speed, wave score, onset decoding).",
    )
    # Only the CLI has these: which checkpoint, its data, where to write, which sequence to plot.
    add = parser.add_argument
    add("--ckpt", required=True, help="checkpoint written by `wave-lightning fit`")
    add("--config", help="run config whose data drives the layer (default <run>/config.yaml)")
    add("--out", help="output folder (default <run>/analysis/<checkpoint name>)")
    add("--stage", choices=STAGES, default="test", help="data split for --inputs data")
    add("--example", type=count(0), default=0, help="which recorded sequence the plots show")
    # The AnalysisOptions, shared with the WaveAnalysis callback.
    inputs = "the run's data, impulses or spike trains"
    add("--inputs", choices=INPUTS, default=ANALYZE_DEFAULTS.inputs, help=inputs)
    add_count(parser, "examples", "sequences recorded (the FFT sums over them)")
    steps = "impulse / spike train length (default: seq_len, else 2 x ring size)"
    add_count(parser, "steps", steps)
    add_count(parser, "impulses", "impulses per sequence for --inputs impulses")
    spikes = (
        "spikes per channel decoded for --inputs spikes (the first drives the figures) "
        "over --steps steps (default: the ring size, at most 64)"
    )
    add_count(parser, "spikes", spikes, nargs="+")
    add_count(parser, "spike_examples", "spike decoding examples (0: skip)")
    add_count(parser, "max_rings", "rings drawn (all are measured)")
    add_count(parser, "onset_examples", "onset decoding examples (0: skip)")
    add_count(parser, "max_delay", "onset delays 0..max-delay-1 (default: ring size)")
    seed = "seed of impulses, shuffles and onset decoding"
    add("--seed", type=int, default=ANALYZE_DEFAULTS.seed, help=seed)
    return parser


def analysis_options(args: argparse.Namespace) -> AnalysisOptions:
    """The AnalysisOptions of parsed arguments; a bad combination exits with its message."""
    own = ("spikes", "spike_steps")
    values = {f.name: getattr(args, f.name) for f in fields(AnalysisOptions) if f.name not in own}
    # The one --steps is the length of whichever inputs drive the layer, spike trains included.
    spike_steps = args.steps if args.inputs == "spikes" else None
    try:
        return AnalysisOptions(**values, spikes=tuple(args.spikes), spike_steps=spike_steps)
    except ValueError as error:
        raise SystemExit(f"analyze: {error}") from None


def default_out(ckpt: Path) -> Path:
    """<run folder>/analysis/<checkpoint stem>."""
    return RunFolder.of_checkpoint(ckpt).path / "analysis" / ckpt.stem


def run_data(args: argparse.Namespace) -> Callable[[int], Tensor]:
    """The first n inputs of the run's data (--config, --stage), read only when asked for."""

    def first(n: int) -> Tensor:
        config = args.config or run_config_path(args.ckpt)
        return data_batch(load_datamodule(config), n, args.stage)

    return first


def write_spikes(options: AnalysisOptions, layer: nn.Module, out: Path, meta: dict) -> Path:
    """spikes.json: the layer's spike decoding table over options.spikes, printed as it goes."""
    steps = options.spike_window(layer)
    rows = spike_table(layer, options.spikes, steps, options.spike_examples, options.seed)
    for row in rows:
        print(
            f"spike decoding, {row.spikes} per channel over {steps} steps: balanced accuracy "
            f"{row.balanced_accuracy:.3f} (chance 0.5), all pairs right {row.exact:.3f}"
        )
    return write_table({meta["layer"]: rows}, out / "spikes.json", meta)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `wave-lightning analyze`."""
    args = build_parser().parse_args(argv)
    options = analysis_options(args)
    ckpt = Path(args.ckpt)
    task = load_task(ckpt)
    layer = task.model.layer
    inputs = driving_inputs(options, layer, run_data(args), task.hparams.get("seq_len"))
    if not 0 <= args.example < len(inputs):
        raise SystemExit(f"analyze: --example must be in [0, {len(inputs)}), got {args.example}")
    result = analyze(layer, inputs, options.seed, options.onset_examples, options.max_delay)
    kind = type(layer).__name__
    meta = {"checkpoint": str(ckpt), "layer": kind, "inputs": options.inputs, "seed": options.seed}
    out = Path(args.out) if args.out else default_out(ckpt)
    written = write_report(result, out, meta, args.example, options.max_rings, f"{kind}: ")
    written += write_sheet_report(layer, result.states, out, args.example, f"{kind}: ")
    if options.inputs == "spikes" and options.spike_examples:
        written.append(write_spikes(options, layer, out, meta))
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
