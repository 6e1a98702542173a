"""Memory capacity on the copy task: accuracy on the recalled symbols, and the longest delay
solved (recall accuracy >= 0.99) per layer, channel count and size N, from finished sweeps.

The copy task's logged acc counts every step, blanks included; the recall accuracy counts only
the last memory_length steps, where the symbols are repeated. From sweep files:
scripts/capacity_report.py.
"""

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial
from torch import Tensor

from ..run.folder import RunFolder
from ..tasks import SequenceTask, load_task
from .inputs import load_datamodule, run_config_path
from .sheets import layer_size

SOLVED = 0.99


def recall_accuracy(prediction: Tensor, target: Tensor, memory_length: int) -> float:
    """Accuracy of per-step logits (B, T, classes) on the last memory_length steps of target."""
    recalled = prediction[:, -memory_length:].argmax(-1) == target[:, -memory_length:]
    return float(recalled.double().mean())


def checkpoint_recall(ckpt: str | Path, examples: int = 512) -> float:
    """The recall accuracy of a copy-task checkpoint on the first `examples` test sequences of
    its run's data (rebuilt from <run>/config.yaml)."""
    return task_recall(load_task(ckpt), ckpt, examples)


@torch.no_grad()
def task_recall(task: SequenceTask, ckpt: str | Path, examples: int) -> float:
    """checkpoint_recall of a task already loaded from `ckpt`."""
    task.eval()
    datamodule = load_datamodule(run_config_path(ckpt))
    datamodule.setup("test")
    inputs, targets = [], []
    for x, y in datamodule.test_dataloader():
        inputs.append(x)
        targets.append(y)
        if sum(len(batch) for batch in inputs) >= examples:
            break
    x, y = torch.cat(inputs)[:examples], torch.cat(targets)[:examples]
    return recall_accuracy(task.model(x), y, datamodule.memory_length)


def delay_horizon(accuracy: dict[int, float], threshold: float = SOLVED) -> int | None:
    """The longest tested delay D with every tested delay <= D solved (accuracy >= threshold);
    None when the shortest one already fails. A solved delay after a failed one does not count."""
    horizon = None
    for delay in sorted(accuracy):
        if accuracy[delay] < threshold:
            break
        horizon = delay
    return horizon


def horizons(
    rows: Iterable[dict], group: Sequence[str], threshold: float = SOLVED
) -> dict[tuple, int | None]:
    """delay_horizon per group of rows (each with the `group` keys, `delay` and
    `recall_accuracy`), the accuracy of a delay being the mean over its runs (seeds)."""
    curves: dict[tuple, dict[int, list[float]]] = {}
    for row in rows:
        key = tuple(row[name] for name in group)
        curves.setdefault(key, {}).setdefault(int(row["delay"]), []).append(row["recall_accuracy"])
    return {
        key: delay_horizon({d: statistics.fmean(v) for d, v in curve.items()}, threshold)
        for key, curve in sorted(curves.items())
    }


def capacity_rows(runs: Iterable[tuple[FrozenTrial, Path]], examples: int = 512) -> list[dict]:
    """One row per finished sweep trial (optuna FrozenTrial, with the root of its sweep): its
    parameters under the last part of their dotted names, its layer's n_ch and N (layer_size),
    and the recall accuracy of its run's last.ckpt."""
    rows = []
    for trial, root in runs:
        ckpt = RunFolder(Path(root) / trial.user_attrs["run_dir"]).last
        params = {name.rsplit(".", 1)[-1]: value for name, value in trial.params.items()}
        task = load_task(ckpt)
        n_ch, size = layer_size(task.model.layer)
        accuracy = task_recall(task, ckpt, examples)
        rows.append({**params, "n_ch": n_ch, "N": size, "recall_accuracy": accuracy})
    return rows


def plot_horizons(result: dict[tuple, int | None], path: Path) -> Path:
    """Longest delay solved against N (the group's last key), one line per other key values;
    a group that solves no delay is drawn at 0 with an open marker."""
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    lines: dict[tuple, list[tuple]] = {}
    for key, horizon in result.items():
        lines.setdefault(key[:-1], []).append((key[-1], horizon))
    for label, points in lines.items():
        sizes = [n for n, _ in points]
        ax.plot(sizes, [h or 0 for _, h in points], "o-", label=" ".join(map(str, label)))
        unsolved = [n for n, h in points if h is None]
        ax.plot(unsolved, [0] * len(unsolved), "o", mfc="white", color="grey")
    xlabel = "N (units per ring; sheet: longer side; dense: units)"
    ax.set(xlabel=xlabel, ylabel=f"longest delay solved (recall >= {SOLVED})")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def write_capacity_report(
    runs: Iterable[tuple[FrozenTrial, Path]], out_dir: str | Path, examples: int = 512
) -> list[Path]:
    """capacity.json (every run's recall accuracy, and the horizon per layer, n_ch and N) and
    capacity.png (horizon against N) for finished trials of capacity sweeps, each with its root."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = capacity_rows(runs, examples)
    result = horizons(rows, group=["layer", "n_ch", "N"])
    table = [{"layer": k[0], "n_ch": k[1], "N": k[2], "horizon": h} for k, h in result.items()]
    (out / "capacity.json").write_text(json.dumps({"runs": rows, "horizons": table}, indent=2))
    return [out / "capacity.json", plot_horizons(result, out / "capacity.png")]
