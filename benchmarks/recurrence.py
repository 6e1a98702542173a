"""Time the recurrence forms side by side, kernel only: reference loop, fast form, GRU / LSTM.

Kernel only: the loss is the sum of the layer's states, whose gradient costs nothing to bring
into any layout; benchmarks/training_step.py times what training runs (readout, loss, Adam).

For each scale and form it runs forward+backward (and forward only under no_grad) `--repeats`
times, alternating forms within each repeat so that machine noise hits all of them alike, and
prints medians, the ratio to the reference (reference time / form time), the achieved GFLOP/s of
the ring recurrence against this machine's measured matmul rate, and the peak memory of one
forward+backward (resident set growth on Linux, measured in a separate process). Rerun:

    PYTHONPATH=. python benchmarks/recurrence.py                      # copy, adding, psmnist
    PYTHONPATH=. python benchmarks/recurrence.py --scales all --repeats 3 --json out.json
    PYTHONPATH=. python benchmarks/recurrence.py --device cuda --scales psmnist smnist784 nscifar
"""

import argparse
import contextlib
import ctypes
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

import torch
from torch import nn

from wave_lightning.nn import GRU, IRNN, LSTM, LocalRNN, WaveRNN
from wave_lightning.nn.kernels import cpp_ring


@dataclass(frozen=True)
class Scale:
    """One benchmark shape: batch, steps, input size, rings and ring size."""

    batch: int
    steps: int
    inputs: int
    n_ch: int
    n_hid: int
    kernel: int = 3

    @property
    def hidden(self) -> int:
        return self.n_ch * self.n_hid

    def states_gib(self) -> float:
        """Size of one fp32 (B, T, H) tensor of states in GiB."""
        return 4 * self.batch * self.steps * self.hidden / 2**30

    def ring_flops(self) -> float:
        """Forward flops of the ring convolution over all steps (2 K C^2 N B T)."""
        return 2.0 * self.kernel * self.n_ch**2 * self.n_hid * self.batch * self.steps

    def dense_flops(self, gates: int) -> float:
        """Forward flops of a dense recurrence with `gates` H x (H + I) blocks per step."""
        return 2.0 * gates * self.hidden * (self.hidden + self.inputs) * self.batch * self.steps


SCALES = {
    "copy": Scale(128, 100, 1, 6, 100),
    "adding": Scale(128, 400, 2, 27, 100),
    "psmnist": Scale(128, 200, 1, 16, 256),
    "smnist784": Scale(128, 784, 1, 16, 256),
    "nscifar": Scale(256, 1000, 96, 16, 256),
}
DEFAULT_SCALES = ("copy", "adding", "psmnist")
STATE_COPIES = 5  # about how many (B, T, H) tensors a reference forward+backward holds at once
# form name -> (layer factory, impl, forward flops for the scale)
FORMS: dict[str, tuple[Callable[[Scale], nn.Module], str | None, Callable[[Scale], float]]] = {
    "wrnn-reference": (lambda s: WaveRNN(s.inputs, s.n_hid, s.n_ch), "reference", Scale.ring_flops),
    "wrnn-fast": (lambda s: WaveRNN(s.inputs, s.n_hid, s.n_ch), "fast", Scale.ring_flops),
    "wrnn-cpp": (lambda s: WaveRNN(s.inputs, s.n_hid, s.n_ch), "cpp", Scale.ring_flops),
    "wrnn-triton": (lambda s: WaveRNN(s.inputs, s.n_hid, s.n_ch), "triton", Scale.ring_flops),
    "local-reference": (
        lambda s: LocalRNN(s.inputs, s.n_hid, s.n_ch),
        "reference",
        Scale.ring_flops,
    ),
    "local-fast": (lambda s: LocalRNN(s.inputs, s.n_hid, s.n_ch), "fast", Scale.ring_flops),
    "local-cpp": (lambda s: LocalRNN(s.inputs, s.n_hid, s.n_ch), "cpp", Scale.ring_flops),
    "irnn-reference": (lambda s: IRNN(s.inputs, s.hidden), "reference", lambda s: s.dense_flops(1)),
    "irnn-fast": (lambda s: IRNN(s.inputs, s.hidden), "fast", lambda s: s.dense_flops(1)),
    "gru": (lambda s: GRU(s.inputs, s.hidden), None, lambda s: s.dense_flops(3)),
    "lstm": (lambda s: LSTM(s.inputs, s.hidden), None, lambda s: s.dense_flops(4)),
}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so that timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each run over `repeats` rounds, the runs alternating within each round so
    that machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 3) -> float:
    """The device's fp32 dense matmul rate in GFLOP/s (median of `repeats`), TF32 off."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def trim_heap() -> None:
    """Hand glibc's freed heap memory back to the OS (nothing where there is no glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def return_freed_memory() -> Callable[[], None]:
    """Make glibc hand large freed blocks back to the OS so the resident set tracks live tensors."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: >= 64 KiB are mmapped
    except OSError:
        return lambda: None
    return trim_heap


def resident_kib(field: str) -> int | None:
    """VmRSS or VmHWM of this process in KiB, None where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_mib(run: Callable[[], None], trim: Callable[[], None], device) -> float | None:
    """Peak memory growth during run() in MiB: CUDA allocator stats on a GPU, else the resident
    set (Linux clear_refs; run it where return_freed_memory() is in force), else None."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    trim()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    base = resident_kib("VmRSS")
    run()
    peak = resident_kib("VmHWM")
    return None if base is None or peak is None else (peak - base) / 1024


def make_run(layer: nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], None]:
    """One forward (+ backward of the summed states) of layer on x, waited for."""

    def run() -> None:
        if backward:
            layer(x)[0].sum().backward()
        else:
            with torch.no_grad():
                layer(x)
        sync(x.device)

    return run


def build_run(form: str, scale: Scale, device: torch.device, backward: bool) -> Callable[[], None]:
    """The timed call of one form at one scale on fixed random inputs."""
    factory, impl, _ = FORMS[form]
    torch.manual_seed(0)
    layer = factory(scale).to(device)
    if impl is not None:
        layer.impl = impl
    x = torch.rand(scale.batch, scale.steps, scale.inputs, device=device)
    return make_run(layer, x, backward)


def child_peak(job: tuple[str, str, int]) -> float | None:
    """Peak memory of one forward+backward, measured in a fresh CPU process (see peaks_mib)."""
    name, form, threads = job
    torch.set_num_threads(threads)
    trim = return_freed_memory()
    return peak_mib(
        build_run(form, SCALES[name], torch.device("cpu"), True), trim, torch.device("cpu")
    )


def peaks_mib(jobs: list[tuple[str, str]], device: torch.device) -> list[float | None]:
    """Peak memory of each (scale, form) forward+backward. On CPU this runs in a spawned child
    with glibc told to return freed memory at once, so that the resident set tracks the live
    tensors, while the timings in this process keep the allocator's normal behaviour (which
    that setting would slow down, unequally for forms that allocate per step)."""
    if device.type == "cuda":
        return [
            peak_mib(build_run(f, SCALES[n], device, True), lambda: None, device) for n, f in jobs
        ]
    cpp_ring.empty_cache()  # the states memory the timed C++ form kept: the children need it
    threads = torch.get_num_threads()
    return [peak_in_child((name, form, threads)) for name, form in jobs]


def peak_in_child(job: tuple[str, str, int], measure=child_peak) -> float | None:
    """measure(job) in a fresh spawned process; None, with a message, if that process dies
    (e.g. killed for memory), so that the timings already taken are still reported."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        try:
            return pool.submit(measure, job).result()
        except BrokenProcessPool:
            print(f"peak memory of {job[1]} at {job[0]}: the measuring process died (memory?)")
            return None


def bench_scale(name: str, scale: Scale, forms: list[str], args, rate: float) -> list[dict]:
    """Time every form at one scale, alternating forms in each repeat; one row per form/mode."""
    rows = []
    for mode in ("fwd+bwd", "fwd"):
        backward = mode == "fwd+bwd"
        runs, flops, skipped = {}, {}, {}
        for form in forms:
            _, impl, form_flops = FORMS[form]
            flops[form] = form_flops(scale) * (3 if backward else 1)
            if flops[form] > args.max_gflop * 1e9:
                skipped[form] = f"over --max-gflop ({flops[form] / 1e9:.0f} GFLOP)"
                continue
            if scale.states_gib() * STATE_COPIES > args.max_gib:
                skipped[form] = f"over --max-gib ({STATE_COPIES} x {scale.states_gib():.1f} GiB)"
                continue
            if impl == "triton" and args.device.type != "cuda":
                skipped[form] = "needs a CUDA device"
                continue
            runs[form] = build_run(form, scale, args.device, backward)
        times = alternate(runs, args.repeats)
        ref = statistics.median(times["wrnn-reference"]) if "wrnn-reference" in times else None
        for form in forms:
            row = {"scale": name, "form": form, "mode": mode, **asdict(scale)}
            if form in skipped:
                rows.append({**row, "skipped": skipped[form]})
                continue
            median = statistics.median(times[form])
            gflops = flops[form] / median / 1e9
            row.update(
                median_ms=1e3 * median,
                times_ms=[1e3 * t for t in times[form]],
                ratio_to_reference=ref / median if ref else None,
                gflops=gflops,
                fraction_of_matmul=gflops / rate,
                peak_mib=None,
            )
            rows.append(row)
    return rows


def print_table(rows: list[dict], rate: float) -> None:
    """Print the rows as a Markdown table."""
    print(f"\nmatmul rate: {rate:.1f} GFLOP/s, threads: {torch.get_num_threads()}")
    print("kernel only: the layer, loss = sum of its states (benchmarks/training_step.py times")
    print("the whole training step)\n")
    print("| scale | mode | form | median ms | x reference | GFLOP/s | % of matmul | peak MiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['scale']} | {row['mode']} | {row['form']} | {row['skipped']} ||||")
            continue
        ratio = f"{row['ratio_to_reference']:.2f}" if row["ratio_to_reference"] else "-"
        peak = f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "-"
        print(
            f"| {row['scale']} | {row['mode']} | {row['form']} | {row['median_ms']:.1f} | {ratio}"
            f" | {row['gflops']:.2f} | {100 * row['fraction_of_matmul']:.1f} | {peak} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scales",
        nargs="+",
        default=list(DEFAULT_SCALES),
        help=f"some of {', '.join(SCALES)}, or 'all'",
    )
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=list(FORMS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    parser.add_argument(
        "--max-gflop",
        type=float,
        default=150.0,
        help="skip a form whose pass needs more GFLOP than this",
    )
    parser.add_argument(
        "--max-gib",
        type=float,
        default=8.0,
        help="skip a scale whose states would need more memory than this",
    )
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.scales == ["all"]:
        args.scales = list(SCALES)
    unknown = set(args.scales) - set(SCALES)
    if unknown:
        parser.error(f"unknown scales {sorted(unknown)}; choose from {', '.join(SCALES)}")
    return args


def write_json(path: str, rows: list[dict], rate: float, device, **meta) -> None:
    """The rows with what they were measured on: matmul rate, threads, device, torch, `meta`."""
    meta = {
        "matmul_gflops": rate,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        **meta,
    }
    with open(path, "w") as out:
        json.dump({"meta": meta, "rows": rows}, out, indent=1)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(args.device)
    rows = []
    for name in args.scales:
        rows += bench_scale(name, SCALES[name], args.forms, args, rate)
        print(f"done: {name}", flush=True)
    measured = [row for row in rows if row["mode"] == "fwd+bwd" and "skipped" not in row]
    peaks = peaks_mib([(row["scale"], row["form"]) for row in measured], args.device)
    for row, peak in zip(measured, peaks, strict=True):
        row["peak_mib"] = peak
    print_table(rows, rate)
    if args.json:
        write_json(args.json, rows, rate, args.device)
    return rows


if __name__ == "__main__":
    main()
