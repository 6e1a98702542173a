"""Cost of a full image-task run, measured from a short timed run of its shipped config.

Builds the model and optimizer of each conf/experiment config through the CLI (no data files
needed), times training steps (forward, backward, optimizer step) on random batches of the
task's shape, and extrapolates to the config's whole run: steps per epoch from the training set
size, times max_epochs, plus one validation pass (forward only) per epoch. Prints a table and
writes JSON.

    PYTHONPATH=. python benchmarks/run_cost.py                               # CPU, all configs
    PYTHONPATH=. python benchmarks/run_cost.py --device cuda --json gpu.json  # on a GPU
"""

import argparse
import json
import logging
import math
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.optim import Optimizer

from wave_lightning.fit import WaveCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    "smnist_wrnn", "smnist_wrnn_mlp", "smnist_irnn", "smnist_gru", "smnist_lstm",
    "psmnist_wrnn", "psmnist_wrnn_mlp", "psmnist_irnn", "psmnist_gru", "psmnist_lstm",
    "nscifar10_wrnn", "nscifar10_irnn", "nscifar10_gru", "nscifar10_lstm",
]  # fmt: skip
TRAIN_IMAGES = {"SequentialMNIST": 60000, "NoisySequentialCIFAR10": 50000}


def build(name: str, device: str, root: str) -> WaveCLI:
    """The config's model (with its optimizer) and datamodule, as `fit` would build them."""
    args = ["--config", str(ROOT / "conf" / "experiment" / f"{name}.yaml")]
    args += [f"--trainer.default_root_dir={root}", f"--trainer.accelerator={device}"]
    args += ["--trainer.logger=false"]
    return WaveCLI(args=args, run=False)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def first_optimizer(config) -> Optimizer:
    """The optimizer in whatever configure_optimizers returned (with or without schedulers)."""
    while not isinstance(config, Optimizer):
        config = config["optimizer"] if isinstance(config, dict) else config[0]
    return config


def timed(step, device: str, repeats: int) -> float:
    """Median seconds of `step()` over `repeats` calls, after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, device: str, repeats: int) -> dict:
    """Seconds per training step and per validation batch, and the whole run's hours."""
    with tempfile.TemporaryDirectory() as root:
        cli = build(name, device, root)
    data, task = cli.datamodule, cli.model.to(device)
    optimizer = first_optimizer(task.configure_optimizers())
    x = torch.randn(data.batch_size, data.seq_len, data.input_size, device=device)
    y = torch.randint(data.num_classes, (data.batch_size,), device=device)

    def train_step() -> None:
        optimizer.zero_grad()
        task.loss(task(x), y).backward()
        optimizer.step()

    def val_step() -> None:
        with torch.no_grad():
            task(x)

    train_s, val_s = timed(train_step, device, repeats), timed(val_step, device, 1)
    train_size = TRAIN_IMAGES[type(data).__name__] - data.val_size
    steps = math.ceil(train_size / data.batch_size)
    epochs = cli.trainer.max_epochs
    hours = epochs * (steps * train_s + math.ceil(data.val_size / data.batch_size) * val_s) / 3600
    params = sum(p.numel() for p in task.parameters())
    return {
        "config": name, "device": device, "params": params, "batch": data.batch_size,
        "seq_len": data.seq_len, "train_step_s": train_s, "val_batch_s": val_s,
        "steps_per_epoch": steps, "epochs": epochs, "run_hours": hours,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", default=CONFIGS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per config")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    header = "| config | params | batch | T | s / train step | steps / epoch | epochs | h / run |"
    print(f"{args.device}: {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(header + "\n" + "|---" * 2 + "|---:" * 6 + "|")
    rows = []
    for name in args.configs:
        row = measure(name, args.device, args.repeats)
        rows.append(row)
        print(f"| {name} | {row['params']} | {row['batch']} | {row['seq_len']} | "
              f"{row['train_step_s']:.3f} | {row['steps_per_epoch']} | {row['epochs']} | "
              f"{row['run_hours']:.1f} |", flush=True)  # fmt: skip
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
