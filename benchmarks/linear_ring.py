"""Time the linear wave ring's whole training step: parallel over time against step by step.

A step is what training runs: a SequenceClassification task (WaveRNN with the identity
activation, linear readout of the last state, cross-entropy) forward, the backward and an
Adam step, in fp32 on fixed random data. Forms: "parallel" (the ring as a state-space model,
FFT over time: docs/state-space.md) against the sequential C++ form ("cpp", CPU only) and, if
asked for, "fast", "reference" or "triton". Shapes: psMNIST's length with its 16 rings of 256
(T = 784) and one ring of 256 over T = 4096. The forms alternate within each repeat, so that
machine noise hits them alike; the table gives medians and the ratio to the first form
(median over rounds of the ratio within a round). Rerun:

    PYTHONPATH=. python benchmarks/linear_ring.py --threads 2 --json out.json
    PYTHONPATH=. python benchmarks/linear_ring.py --device cuda --forms fast parallel
    PYTHONPATH=. python benchmarks/linear_ring.py --quick --threads 1          # seconds
"""

import argparse
import statistics
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from benchmarks.recurrence import alternate, matmul_rate, write_json
from benchmarks.training_step import paired, training_step
from wave_lightning.nn import WaveRNN
from wave_lightning.tasks import SequenceClassification


@dataclass(frozen=True)
class Shape:
    """A linear ring's training step: batch, steps, rings and ring size (1 input, 10 classes)."""

    batch: int
    steps: int
    n_ch: int
    n_hid: int


SHAPES = {
    "T784": Shape(32, 784, 16, 256),
    "T4096": Shape(32, 4096, 1, 256),
    "quick-rings": Shape(4, 40, 2, 16),
    "quick-long": Shape(2, 200, 1, 16),
}
DEFAULT_SHAPES = ("T784", "T4096")
QUICK_SHAPES = ("quick-rings", "quick-long")
FORMS = ("cpp", "parallel", "fast", "reference", "triton")


def make_step(form: str, shape: Shape, device: torch.device) -> Callable[[], None]:
    """One training step (forward, loss, backward, Adam) of the form (seeded: same weights)."""
    warnings.filterwarnings("ignore", "Attribute 'layer' is an instance")  # a task built by hand
    torch.manual_seed(0)
    layer = WaveRNN(1, shape.n_hid, shape.n_ch, activation="identity", impl=form)
    task = SequenceClassification(layer, output_size=10).to(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(shape.batch, shape.steps, 1, generator=generator).to(device)
    y = torch.randint(0, 10, (shape.batch,), generator=generator).to(device)
    return training_step(task, x, y, device)


def runnable(form: str, device: torch.device) -> bool:
    """Whether the form runs on this device (the C++ form on the CPU, Triton on CUDA)."""
    return {"cpp": device.type == "cpu", "triton": device.type == "cuda"}.get(form, True)


def time_forms(name: str, forms: list[str], args) -> dict[str, list[float]]:
    """Seconds per step of each form at one shape: a warm-up, then `repeats` rounds in which
    the forms alternate."""
    steps = {form: make_step(form, SHAPES[name], args.device) for form in forms}
    for step in steps.values():
        step()
    return alternate(steps, args.repeats)


def shape_rows(name: str, times: dict[str, list[float]]) -> list[dict]:
    """One row per form: the median and the paired ratio to the first form."""
    baseline = times[next(iter(times))]
    return [
        {
            "shape": name,
            "form": form,
            **asdict(SHAPES[name]),
            "median_ms": 1e3 * statistics.median(form_times),
            "times_ms": [1e3 * t for t in form_times],
            "x_baseline": paired(baseline, form_times),
        }
        for form, form_times in times.items()
    ]


def print_table(rows: list[dict], baseline: str) -> None:
    """The rows as a Markdown table."""
    print(f"\nthreads: {torch.get_num_threads()}; whole training step (forward, cross-entropy,")
    print(f"backward, Adam), fp32, identity activation; x {baseline}: median of the ratios")
    print(f"{baseline} time / form time within a round (above 1: faster than {baseline})\n")
    print(f"| shape | B | T | C x N | form | median ms | x {baseline} |")
    print("|---|---:|---:|---|---|---:|---:|")
    for row in rows:
        print(
            f"| {row['shape']} | {row['batch']} | {row['steps']} | {row['n_ch']} x {row['n_hid']} "
            f"| {row['form']} | {row['median_ms']:.1f} | {row['x_baseline']:.2f} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), choices=SHAPES)
    parser.add_argument(
        "--forms", nargs="+", default=["cpp", "parallel"], choices=FORMS, help="first: baseline"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument("--quick", action="store_true", help=f"shapes {QUICK_SHAPES}, 2 repeats")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.repeats = list(QUICK_SHAPES), 2
    skipped = [form for form in args.forms if not runnable(form, args.device)]
    if skipped:
        parser.error(f"forms {skipped} do not run on {args.device}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.shapes:
        rows += shape_rows(name, time_forms(name, args.forms, args))
        print(f"done: {name}", flush=True)
    print_table(rows, args.forms[0])
    if args.json:
        rate = matmul_rate(args.device, size=256 if args.quick else 2048)
        write_json(args.json, rows, rate, args.device, baseline=args.forms[0])
    return rows


if __name__ == "__main__":
    main()
