"""Memory capacity on the copy task: accuracy on the recalled symbols, and the longest delay
solved (recall accuracy >= 0.99) per model size, from a table of runs.

The copy task's logged acc counts every step, blanks included; the recall accuracy counts only
the last memory_length steps, where the symbols are repeated.
"""

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..tasks import load_task
from .inputs import load_datamodule, run_config_path

SOLVED = 0.99


def recall_accuracy(prediction: Tensor, target: Tensor, memory_length: int) -> float:
    """Accuracy of per-step logits (B, T, classes) on the last memory_length steps of target."""
    recalled = prediction[:, -memory_length:].argmax(-1) == target[:, -memory_length:]
    return float(recalled.double().mean())


@torch.no_grad()
def checkpoint_recall(ckpt: str | Path, examples: int = 512) -> float:
    """The recall accuracy of a copy-task checkpoint on the first `examples` test sequences of
    its run's data (rebuilt from <run>/config.yaml)."""
    task = load_task(ckpt).eval()
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
