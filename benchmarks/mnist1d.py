"""MNIST-1D table: train the shipped conf/experiment/mnist1d_*.yaml configs over several seeds.

    python benchmarks/mnist1d.py run mnist1d_wrnn mnist1d_gru --seeds 0 1 2   # trains, one by one
    python benchmarks/mnist1d.py run mnist1d_gru --seeds 0 --trainer.max_epochs=5  # overrides
    python benchmarks/mnist1d.py table                                       # Markdown table

Each run is `wave-lightning fit --config conf/experiment/<name>.yaml --seed_everything <seed>`
in <out>/<name>/seed<seed>; its test accuracy (of the best-validation checkpoint), parameter
count and wall time go to <out>/<name>/seed<seed>.json; `table` summarises every JSON found.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from wave_lightning.run.folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = "published (Greydanus & Kobak): logistic 32%, MLP 68%, CNN 94%, GRU 91%, human 96%"


def logged(folder: RunFolder, key: str) -> list[float]:
    """Every logged value of `key` in a run's metrics.csv, in order."""
    return [float(row[key]) for row in folder.metric_rows() if row.get(key)]


def count_parameters(checkpoint: Path) -> int:
    """Weights and biases of the sequence model saved in a checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith("model."))


def run_one(name: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Train one config with one seed; returns and writes its record."""
    run_dir = out / name / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no checkpoints of an older one
    command = [sys.executable, "-m", "wave_lightning", "fit"]
    command += ["--config", str(ROOT / "conf" / "experiment" / f"{name}.yaml")]
    command += ["--seed_everything", str(seed), "--trainer.default_root_dir", str(run_dir), *extra]
    start = time.perf_counter()
    with open(out / name / f"seed{seed}.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - start
    folder = RunFolder(run_dir)
    best = folder.best_checkpoints()[0]
    record = {
        "config": name,
        "seed": seed,
        "test_acc": logged(folder, "test/acc")[-1],
        "best_val_acc": max(logged(folder, "val/acc")),
        "best_checkpoint": best.name,
        "params": count_parameters(best),
        "wall_s": wall,
        "extra_args": extra,
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    (out / name / f"seed{seed}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record), flush=True)
    return record


def table(out: Path) -> str:
    """A Markdown table: test accuracy mean / std over seeds, parameters, wall time per run."""
    records: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*/seed*.json")):
        record = json.loads(path.read_text())
        records.setdefault(record["config"], []).append(record)
    lines = [
        "| config | seeds | test acc mean | std | per seed | params | wall s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in sorted(records.items()):
        accs = [100 * r["test_acc"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        per_seed = ", ".join(f"{a:.1f}" for a in accs)
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(
            f"| {name} | {len(runs)} | {statistics.mean(accs):.1f}% | {std:.1f} | {per_seed} "
            f"| {runs[0]['params']} | {wall:.0f} |"
        )
    return "\n".join(lines) + f"\n\n{PUBLISHED}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train configs over seeds")
    run.add_argument("configs", nargs="+", help="names in conf/experiment, e.g. mnist1d_wrnn")
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "mnist1d")
    show = sub.add_parser("table", help="summarise the runs found")
    show.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "mnist1d")
    args, extra = parser.parse_known_args()  # unknown options go to the CLI as overrides
    if args.command == "table":
        print(table(args.out))
        return
    for name in args.configs:
        (args.out / name).mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            run_one(name, seed, args.out, extra)
    print(table(args.out))


if __name__ == "__main__":
    main()
