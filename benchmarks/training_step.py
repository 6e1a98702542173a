"""Time the whole training step of each experiment's shape, every layer form side by side.

A step is what training runs: the task's LightningModule (layer, readout, loss) forward, the
backward, and an Adam step, in fp32 on fixed random data of the experiment's shape (batch,
steps, inputs, classes, rings). Forms: the wRNN's reference, eager fast, C++ (and Triton on
CUDA) forms, the authors' per-step form (per step: the input projection of x_t, a circular
Conv1d of h, ReLU; same weights), LocalRNN's and IRNN's forms, and torch's GRU / LSTM of the
paper's Table 2 size (256 units). The forms alternate within each repeat (A B C A B C ...),
so that machine noise hits them alike; the table gives medians, the ratios to the reference
wRNN, to the faster of the reference and the authors' form and to the GRU (each the median
over rounds of the ratio within a round, so a drift between rounds cancels), the useful
GFLOP/s against the rate of a 2048^3 matmul timed in the same rounds, and the peak memory of
one step (resident-set growth, one spawned process per shape, where the states take at most
--peak-max-gib).

--uses times the layers outside our tasks too, as a researcher's own code uses them (USES):
`square` (the states' mean square as the loss), `head` (a Linear head on every state, its
output's mean square) and `stack2` (a 2-layer ResidualStack of d_model 64, ResidualStack's
default: each layer reads 64 features and its states are projected back to 64; a Linear head
on every step of the stack's output); the GRU and LSTM rows are then those
of the paper's size (256 units) used the same way. Rerun:

    PYTHONPATH=. python benchmarks/training_step.py --threads 2 --json out.json  # all shapes
    PYTHONPATH=. python benchmarks/training_step.py --quick --threads 1          # ~1 minute
    PYTHONPATH=. python benchmarks/training_step.py --threads 2 --uses square head stack2 \
        --shapes copy80 adding150 psmnist200 --forms wrnn-reference wrnn-fast wrnn-cpp \
        local-cpp irnn-fast gru lstm --json user.json  # layers in user code
"""

import argparse
import multiprocessing
import re
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.recurrence import (
    alternate,
    matmul_rate,
    peak_mib,
    return_freed_memory,
    sync,
    trim_heap,
    write_json,
)
from wave_lightning.models import ResidualStack
from wave_lightning.nn import GRU, IRNN, LSTM, LocalRNN, WaveRNN
from wave_lightning.nn.kernels import cpp_ring
from wave_lightning.tasks import PerStepClassification, Regression, SequenceClassification

TASKS = {"per_step": PerStepClassification, "sequence": SequenceClassification}


@dataclass(frozen=True)
class Shape:
    """An experiment's training step: task kind, batch, steps, inputs, outputs, rings, readout."""

    task: str  # per_step (readout at every step), sequence (last state), regression (last)
    batch: int
    steps: int
    inputs: int
    outputs: int
    n_ch: int
    n_hid: int
    dense_hidden: int  # the config's IRNN size
    readout: str = "linear"
    kernel: int = 3

    @property
    def hidden(self) -> int:
        return self.n_ch * self.n_hid

    def states_gib(self) -> float:
        """Size of one fp32 (B, T, H) tensor of the wRNN's states in GiB."""
        return 4 * self.batch * self.steps * self.hidden / 2**30

    def readout_flops(self, hidden: int) -> float:
        """Forward flops of the readout (linear, or the MLP of 100 units) of every step or of
        the last state only."""
        if self.readout == "linear":
            per_state = 2 * hidden * self.outputs
        else:
            per_state = 2 * MLP_HIDDEN * (hidden + self.outputs)
        reads = self.steps if self.task == "per_step" else 1
        return per_state * self.batch * reads


GATED_HIDDEN = 256  # the paper's Table 2 GRU and LSTM
MLP_HIDDEN = 100  # SequenceTask's default mlp_hidden, as in psmnist_wrnn_mlp.yaml
GATES = {"gru": 3, "lstm": 4}
SHAPES = {  # conf/experiment/*: copy (delay + 20 steps), adding, (ps)MNIST, nsCIFAR10, MNIST-1D
    "copy30": Shape("per_step", 128, 50, 10, 10, 6, 100, 100),
    "copy80": Shape("per_step", 128, 100, 10, 10, 6, 100, 100),
    "adding100": Shape("regression", 128, 100, 2, 1, 27, 100, 100),
    "adding200": Shape("regression", 128, 200, 2, 1, 27, 100, 100),
    "adding150": Shape("regression", 128, 150, 2, 1, 27, 100, 100),
    "adding400": Shape("regression", 128, 400, 2, 1, 27, 100, 100),
    "psmnist200": Shape("sequence", 128, 200, 1, 10, 16, 256, 256),
    "psmnist200-mlp": Shape("sequence", 128, 200, 1, 10, 16, 256, 256, readout="mlp"),
    "psmnist784": Shape("sequence", 128, 784, 1, 10, 16, 256, 256),
    "nscifar": Shape("sequence", 256, 1000, 96, 10, 16, 256, 529),
    "mnist1d": Shape("sequence", 100, 40, 1, 10, 8, 50, 64),
}
QUICK_SHAPES = ("copy30", "adding100", "psmnist200")
MATMUL = "matmul"


class AuthorsForm(nn.Module):
    """The authors' per-step wRNN with a WaveRNN's own modules: per step the input projection
    of x_t, the circular Conv1d of h and ReLU; the readout per step or on the last state."""

    def __init__(self, layer: WaveRNN, readout: nn.Module, read_from: str) -> None:
        super().__init__()
        self.layer, self.readout, self.read_from = layer, readout, read_from

    def forward(self, x: Tensor) -> Tensor:
        layer = self.layer
        h = x.new_zeros(x.shape[0], layer.n_ch, layer.n_hid)
        outputs = []
        for t in range(x.shape[1]):
            drive = layer.input(x[:, t]).view_as(h)
            h = torch.relu(layer.recurrent.conv(h) + drive)
            if self.read_from == "all":
                outputs.append(self.readout(h.flatten(1)))
        return torch.stack(outputs, 1) if self.read_from == "all" else self.readout(h.flatten(1))


def wrnn(s: Shape, inputs: int) -> nn.Module:
    return WaveRNN(inputs, s.n_hid, s.n_ch)


def local(s: Shape, inputs: int) -> nn.Module:
    return LocalRNN(inputs, s.n_hid, s.n_ch)


def irnn(s: Shape, inputs: int) -> nn.Module:
    return IRNN(inputs, s.dense_hidden)


# form -> (layer factory (shape, input size), impl or None, whether the model runs in the
# authors' form)
FORMS: dict[str, tuple[Callable[[Shape, int], nn.Module], str | None, bool]] = {
    "wrnn-reference": (wrnn, "reference", False),
    "wrnn-authors": (wrnn, "reference", True),
    "wrnn-fast": (wrnn, "fast", False),
    "wrnn-cpp": (wrnn, "cpp", False),
    "wrnn-cpp-unfused": (wrnn, "cpp", False),  # the model reads the states (UNFUSED)
    "wrnn-triton": (wrnn, "triton", False),
    "local-reference": (local, "reference", False),
    "local-cpp": (local, "cpp", False),
    "irnn-reference": (irnn, "reference", False),
    "irnn-fast": (irnn, "fast", False),
    "gru": (lambda s, inputs: GRU(inputs, GATED_HIDDEN), None, False),
    "lstm": (lambda s, inputs: LSTM(inputs, GATED_HIDDEN), None, False),
}
USES = ("task", "square", "head", "stack2")  # our task's module, or a layer in user code
STACK_WIDTH = 64  # d_model of the stack2 use
UNFUSED = "-unfused"  # the form with its readout of every step fused into the loop turned off
# about how many (B, T, H) tensors of states a form's step holds at once (autograd's per-step
# tensors); the others hold about two
STATE_COPIES = {"wrnn-reference": 5, "local-reference": 5, "wrnn-authors": 3}
DEFAULT_FORMS = ("wrnn-reference", "wrnn-authors", "wrnn-fast", "wrnn-cpp", "wrnn-triton")
DEFAULT_FORMS += ("irnn-fast", "gru", "lstm")


def step_flops(form: str, s: Shape, use: str = "task") -> float:
    """Useful flops of one training step: 3 x the forward's (recurrences, inputs, readout; a
    stack's encoder and norms left out)."""
    gates = GATES.get(form, 1)
    if form.startswith(("wrnn", "local")):
        hidden, recurrent = s.hidden, 2 * s.kernel * s.n_ch**2 * s.n_hid
    else:
        hidden = GATED_HIDDEN if form in GATES else s.dense_hidden
        recurrent = 2 * gates * hidden * hidden
    inputs = [STACK_WIDTH] * 2 if use == "stack2" else [s.inputs]  # a stack's layers read d_model
    per_step = sum(recurrent + 2 * gates * hidden * width for width in inputs)
    if use == "stack2":  # each layer's states projected back to d_model
        per_step += 2 * 2 * hidden * STACK_WIDTH
    head = STACK_WIDTH if use == "stack2" else hidden
    readout = {"task": s.readout_flops(hidden), "square": 0.0}
    readout = readout.get(use, 2.0 * head * s.outputs * s.batch * s.steps)  # a head every step
    return 3.0 * (per_step * s.batch * s.steps + readout)


def make_task(form: str, s: Shape, device: torch.device) -> nn.Module:
    """The LightningModule of the shape's task with the form's layer (seeded: same weights)."""
    factory, impl, authors = FORMS[form]
    warnings.filterwarnings("ignore", "Attribute 'layer' is an instance")  # a task built by hand
    torch.manual_seed(0)
    layer = with_impl(factory(s, s.inputs), impl)
    if s.task == "regression":
        task = Regression(layer, output_size=s.outputs, readout=s.readout)
    else:
        task = TASKS[s.task](layer, output_size=s.outputs, readout=s.readout)
    if authors:
        task.model = AuthorsForm(layer, task.model.readout, task.model.read_from)
    if form.endswith(UNFUSED):  # SequenceModel then reads the batch-first states
        layer.read_every_step = lambda *args: None
    return task.to(device)


def with_impl(layer: nn.Module, impl: str | None) -> nn.Module:
    if impl is not None:
        layer.impl = impl
    return layer


class UserCode(nn.Module):
    """A layer in a researcher's own model (`use`, see USES); `loss(output, y)` is the mean
    square of the output and ignores y."""

    def __init__(self, form: str, s: Shape, use: str) -> None:
        super().__init__()
        factory, impl = FORMS[form][:2]
        torch.manual_seed(0)
        if use == "stack2":
            build = lambda inputs: with_impl(factory(s, inputs), impl)  # noqa: E731
            self.body = ResidualStack(s.inputs, build, d_model=STACK_WIDTH, n_layers=2)
        else:
            self.body = with_impl(factory(s, s.inputs), impl)
        width = self.body.hidden_size
        self.head = nn.Linear(width, s.outputs) if use != "square" else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x)[0])

    @staticmethod
    def loss(output: Tensor, y: Tensor) -> Tensor:
        return output.square().mean()


def training_step(task: nn.Module, x: Tensor, y: Tensor, device: torch.device) -> Callable:
    """One training step of `task` on the batch (x, y): forward, its loss, backward, Adam."""
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        task.loss(task(x), y).backward()
        optimizer.step()
        sync(device)

    return step


def make_step(form: str, s: Shape, device: torch.device, use: str = "task") -> Callable[[], None]:
    """One training step (forward, loss, backward, Adam) of the form in `use` on fixed random
    data."""
    task = make_task(form, s, device) if use == "task" else UserCode(form, s, use).to(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(s.batch, s.steps, s.inputs, generator=generator).to(device)
    if s.task == "regression":
        y = torch.randn(s.batch, 1, generator=generator)
    else:
        shape = (s.batch, s.steps) if s.task == "per_step" else (s.batch,)
        y = torch.randint(0, s.outputs, shape, generator=generator)
    return training_step(task, x, y.to(device), device)


def runnable(form: str, shape: Shape, args, use: str = "task") -> str | None:
    """Why the form cannot run at this shape (in `use`) here, or None."""
    impl, authors = FORMS[form][1:]
    if authors and use != "task":
        return "the authors' per-step form is a whole task model, not a layer"
    device = args.device
    need = STATE_COPIES.get(form, 2) * shape.states_gib()
    if need > args.max_gib:
        return f"needs about {need:.0f} GiB, over --max-gib"
    if impl == "triton" and device.type != "cuda":
        return "needs a CUDA device"
    if impl == "cpp" and device.type != "cpu":
        return "CPU only"
    return None


def matmul_step(device: torch.device, size: int = 2048) -> Callable[[], None]:
    """One fp32 size^3 matmul, timed among the forms so that its rate sees the same load."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def step() -> None:
        a @ b
        sync(device)

    return step


def release_memory() -> None:
    """Hand the memory of a finished shape back to the OS (the C++ form's kept states, glibc's
    freed blocks), so that the next shape starts as a fresh process would: without it the
    heap's leftovers of psmnist784 (its reference form alone holds about 7 GiB) and nscifar's
    forms once ran this 24 GiB machine out of memory."""
    cpp_ring.empty_cache()
    trim_heap()


RECURRENCE_EVENT = re.compile(r"\w*Recurrence(Backward)?")  # our autograd Functions' events


def boundary_share(step: Callable[[], None]) -> float | None:
    """The share of one profiled step outside the recurrence's own forward and backward (the
    events of our recurrence autograd Functions): the layer boundary and everything the
    model does besides. None where no such Function ran (the reference, torch's GRU/LSTM)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    events = [e for e in prof.events() if RECURRENCE_EVENT.fullmatch(e.name)]
    inside = sum(e.cpu_time_total for e in events) / 1e6
    return 1 - inside / wall if events else None


def time_shape(
    name: str, forms: list[str], args, use: str = "task"
) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """Seconds per step of each form in `use` (and of the 2048^3 matmul, MATMUL) at one shape:
    one warm-up round, then repeats rounds (fewer where a round would pass --budget-s), the
    forms alternating in each round; and each form's boundary share (CPU only, else None)."""
    shape = SHAPES[name]
    steps = {form: make_step(form, shape, args.device, use) for form in forms}
    steps[MATMUL] = matmul_step(args.device)
    warm = {}
    for form, step in steps.items():
        start = time.perf_counter()
        step()
        warm[form] = time.perf_counter() - start
    repeats = max(1, min(args.repeats, int(args.budget_s / sum(warm.values()))))
    times = alternate(steps, repeats)
    cpu = args.device.type == "cpu"
    return times, {form: boundary_share(steps[form]) if cpu else None for form in forms}


def shape_peaks(job: tuple[str, list[str], int, str]) -> dict[str, float | None]:
    """Peak memory (MiB) of one training step of each form at a shape, in this fresh process."""
    name, forms, threads, use = job
    torch.set_num_threads(threads)
    trim = return_freed_memory()
    peaks = {}
    for form in forms:
        step = make_step(form, SHAPES[name], torch.device("cpu"), use)
        peaks[form] = peak_mib(step, trim, torch.device("cpu"))
        del step
        cpp_ring.empty_cache()
    return peaks


def measure_peaks(
    name: str, forms: list[str], device: torch.device, use: str = "task"
) -> dict[str, float | None]:
    """Peaks of every form at one shape: CUDA allocator stats, or a spawned CPU process (where
    glibc returns freed memory at once, which would slow the timed process unequally)."""
    if device.type == "cuda":
        return {
            f: peak_mib(make_step(f, SHAPES[name], device, use), lambda: None, device)
            for f in forms
        }
    cpp_ring.empty_cache()
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        try:
            return pool.apply(shape_peaks, ((name, forms, torch.get_num_threads(), use),))
        except Exception as error:  # the child killed for memory: keep the timings
            print(f"peak memory at {name}: the measuring process failed ({error})")
            return dict.fromkeys(forms)


def paired(numerator: list[float], times: list[float]) -> float:
    """The median over rounds of numerator / time, each pair taken in the same round, so that
    a drift of the machine's speed between rounds cancels."""
    return statistics.median(a / b for a, b in zip(numerator, times, strict=True))


def shape_rows(
    name: str, times: dict[str, list[float]], peaks: dict, use: str, shares: dict
) -> list[dict]:
    """One row per form: median, paired ratios to the reference, to the faster baseline per
    round and to the GRU, rates (against the matmul rate measured in the same rounds), the
    boundary share."""
    shape = SHAPES[name]
    medians = {form: statistics.median(t) for form, t in times.items()}
    rate = 2 * 2048**3 / medians.pop(MATMUL) / 1e9
    baselines = [times[f] for f in ("wrnn-reference", "wrnn-authors") if f in times]
    best = [min(round_times) for round_times in zip(*baselines, strict=True)]
    rows = []
    for form, median in medians.items():
        gflops = step_flops(form, shape, use) / median / 1e9
        rows.append(
            {
                "shape": name,
                "use": use,
                "form": form,
                **asdict(shape),
                "median_ms": 1e3 * median,
                "times_ms": [1e3 * t for t in times[form]],
                "x_reference": paired(times["wrnn-reference"], times[form])
                if "wrnn-reference" in times
                else None,
                "x_best_baseline": paired(best, times[form]) if best else None,
                "x_gru": paired(times["gru"], times[form]) if "gru" in times else None,
                "gflops": gflops,
                "matmul_gflops": rate,
                "fraction_of_matmul": gflops / rate,
                "peak_mib": peaks.get(form),
                "boundary_share": shares.get(form),
            }
        )
    return rows


def print_table(rows: list[dict], skipped: dict[str, str], rate: float) -> None:
    """The rows as a Markdown table."""
    print(f"\nmatmul rate at the start: {rate:.1f} GFLOP/s, threads: {torch.get_num_threads()}")
    print("whole training step (forward, loss, backward, Adam), fp32; x columns: medians of")
    print("the ratios within a round; % of matmul: against the 2048^3 matmul timed in the same")
    print("rounds; boundary %: the share of a profiled step outside the recurrence's own")
    print("forward and backward\n")
    print(
        "| shape | use | form | median ms | x reference | x best of reference/authors | x gru "
        "| GFLOP/s | % of matmul | peak MiB | boundary % |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for row in rows:
        print(
            f"| {row['shape']} | {row['use']} | {row['form']} | {row['median_ms']:.1f} "
            f"| {fmt(row['x_reference'], '.2f')} | {fmt(row['x_best_baseline'], '.2f')} "
            f"| {fmt(row['x_gru'], '.2f')} "
            f"| {row['gflops']:.2f} | {100 * row['fraction_of_matmul']:.1f} "
            f"| {fmt(row['peak_mib'], '.0f')} "
            f"| {fmt(row['boundary_share'] and 100 * row['boundary_share'], '.0f')} |"
        )
    for form, why in skipped.items():
        print(f"skipped {form}: {why}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="some of SHAPES")
    parser.add_argument("--forms", nargs="+", default=list(DEFAULT_FORMS), choices=list(FORMS))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per shape (most)")
    parser.add_argument(
        "--budget-s", type=float, default=30.0, help="fewer repeats where rounds would pass this"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument(
        "--uses", nargs="+", default=["task"], choices=USES, help="the task's model or user code"
    )
    parser.add_argument(
        "--max-gib",
        type=float,
        default=16.0,
        help="skip a form whose states would need more memory than this (the reference at "
        "nscifar: about 21 GiB)",
    )
    parser.add_argument("--no-peaks", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--peak-max-gib",
        type=float,
        default=1.0,
        help="measure peaks only where the states take at most this (the reference holds ~5x)",
    )
    parser.add_argument("--quick", action="store_true", help=f"shapes {QUICK_SHAPES}, 3 repeats")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.repeats = list(QUICK_SHAPES), min(args.repeats, 3)
    unknown = sorted(set(args.shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)}")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(args.device)
    rows, skipped = [], {}
    for use in args.uses:
        for name in args.shapes:
            forms = []
            for form in args.forms:
                why = runnable(form, SHAPES[name], args, use)
                if why:
                    skipped[f"{form} at {name} ({use})"] = why
                else:
                    forms.append(form)
            times, shares = time_shape(name, forms, args, use)
            release_memory()
            peaks = {}
            if not args.no_peaks and SHAPES[name].states_gib() <= args.peak_max_gib:
                peaks = measure_peaks(name, forms, args.device, use)
            rows += shape_rows(name, times, peaks, use, shares)
            print(f"done: {name} ({use})", flush=True)
    print_table(rows, skipped, rate)
    if args.json:
        write_json(args.json, rows, rate, args.device, skipped=skipped)
    return rows


if __name__ == "__main__":
    main()
