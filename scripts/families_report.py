"""The MNIST-1D table of every family (docs/families.md) from the trials of its sweep.

    python scripts/families_report.py sweeps/mnist1d_families_cpu.yaml [--out DIR]

One row per level of the sweep's config factor (`<family>_<budget>`): test accuracy mean ± std
over the complete trials' seeds, trainable parameters and state size (both from the model the
level's config builds), and seconds per epoch (the trials' median training step x the training
steps of one epoch). Writes families.md and families.json to DIR (default: <root>/report).
The trials come from the sweep's storage, or from a `sweep report` trials.csv (--trials).
"""

import argparse
import csv
import json
import math
import statistics
from pathlib import Path

import torch
from torch import nn

from wave_lightning.fit import check_args
from wave_lightning.models import ResidualStack
from wave_lightning.nn import LEM, LRU, LSTM, S4D, CoRNN
from wave_lightning.sweep.report import trial_rows
from wave_lightning.sweep.spec import Factor, Sweep, load_sweep
from wave_lightning.sweep.storage import read_study
from wave_lightning.sweep.validate import fit_args, quiet

NOT_RUN = "not run yet"
COLUMNS = ("family", "budget", "test/acc (%)", "seeds", "parameters", "state size", "s / epoch")


def state_size(layer: nn.Module) -> int:
    """The real numbers a layer carries from one step to the next: its hidden units; h and the
    cell for an LSTM, position and velocity for coRNN and LEM; every complex mode as 2 reals for
    S4D (hidden_size x state_size / 2 modes) and the LRU (state_size modes); a stack's sum."""
    if isinstance(layer, ResidualStack):
        return sum(state_size(block.layer) for block in layer.blocks)
    if isinstance(layer, (LSTM, CoRNN, LEM)):
        return 2 * layer.hidden_size
    if isinstance(layer, S4D):
        return layer.hidden_size * layer.state_size
    if isinstance(layer, LRU):
        return 2 * layer.state_size
    return layer.hidden_size


def config_factor(sweep: Sweep) -> Factor:
    """The sweep's factor whose levels are model config files."""
    factors = [f for f in sweep.factors if f.config_files]
    if len(factors) != 1:
        raise SystemExit(
            f"error: {sweep.path}: expected one config-file factor, got {len(factors)}"
        )
    return factors[0]


def describe_levels(sweep: Sweep) -> dict[str, dict]:
    """Per level: its parameters, state size and training steps per epoch, from the model and
    data that `fit` builds from the level's arguments (no training, nothing written)."""
    factor, cli, described = config_factor(sweep), None, {}
    threads = torch.get_num_threads()
    for level in factor.config_files:
        with quiet():
            cli = check_args(fit_args(sweep, {factor.name: level}), cli)
        torch.set_num_threads(threads)  # the check applies fit's --threads to this process
        model, data = cli.model.model, cli.datamodule
        data.setup("fit")
        described[level] = {
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "state_size": state_size(model.layer),
            "steps_per_epoch": math.ceil(len(data.train_set) / data.batch_size),
        }
    return described


def read_rows(sweep: Sweep, trials_csv: Path | None) -> list[dict]:
    """Every trial as a trials.csv row: from the given CSV, else from the sweep's storage (none
    when the sweep has not started)."""
    if trials_csv is not None:
        with open(trials_csv, newline="") as handle:
            return list(csv.DictReader(handle))
    if sweep.storage is None and not sweep.journal.is_file():
        return []
    return trial_rows(read_study(sweep), sweep)


def summarise(sweep: Sweep, described: dict[str, dict], rows: list[dict]) -> list[dict]:
    """One entry per level: the description plus the complete trials' test accuracy and
    seconds per epoch (None where no trial of the level is complete)."""
    factor = config_factor(sweep)
    entries = []
    for level, facts in described.items():
        done = [
            r
            for r in rows
            if r["state"] == "COMPLETE"
            and r.get(f"params_{factor.name}") == level
            and r.get("test/acc") not in (None, "")
        ]
        accuracy = [float(r["test/acc"]) for r in done]
        epoch_s = [float(r["step_seconds"]) * facts["steps_per_epoch"] for r in done]
        family, budget = level.rsplit("_", 1)
        entries.append(
            {
                "level": level,
                "family": family,
                "budget": budget,
                **facts,
                "seeds": len(done),
                "seeds_planned": len(sweep.seeds),
                "test_acc_mean": statistics.mean(accuracy) if accuracy else None,
                "test_acc_std": statistics.stdev(accuracy) if len(accuracy) > 1 else None,
                "seconds_per_epoch": statistics.median(epoch_s) if epoch_s else None,
            }
        )
    return entries


def table_row(entry: dict) -> list[str]:
    if entry["seeds"] == 0:
        accuracy, seconds = NOT_RUN, NOT_RUN
    else:
        accuracy = f"{100 * entry['test_acc_mean']:.1f}"
        if entry["test_acc_std"] is not None:
            accuracy += f" ± {100 * entry['test_acc_std']:.1f}"
        seconds = f"{entry['seconds_per_epoch']:.2f}"
    return [
        entry["family"],
        entry["budget"],
        accuracy,
        f"{entry['seeds']} of {entry['seeds_planned']}",
        f"{entry['parameters']:,}",
        f"{entry['state_size']:,}",
        seconds,
    ]


def markdown(sweep: Sweep, entries: list[dict]) -> str:
    """The table by budget, smallest first (5k, 50k), each in the sweep file's order of
    families."""
    budgets = sorted({e["budget"] for e in entries}, key=lambda b: float(b.rstrip("k")))
    ordered = [e for b in budgets for e in entries if e["budget"] == b]
    lines = [
        f"### {sweep.study}: MNIST-1D test accuracy of every family (mean ± std over seeds)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(table_row(e)) + " |" for e in ordered]
    lines += [
        "",
        "s / epoch: the median over seeds of the trial's median training step (step_seconds) x "
        f"{entries[0]['steps_per_epoch']} training steps per epoch; validation, testing and "
        "data loading are left out.",
    ]
    return "\n".join(lines) + "\n"


def write_families_report(
    sweep_file: str, out: Path | None = None, trials_csv: Path | None = None
) -> list[Path]:
    """families.md and families.json of the sweep under `out`; the files written."""
    sweep = load_sweep(sweep_file)
    entries = summarise(sweep, describe_levels(sweep), read_rows(sweep, trials_csv))
    out = out or sweep.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "families.md").write_text(markdown(sweep, entries))
    (out / "families.json").write_text(json.dumps(entries, indent=2) + "\n")
    return [out / "families.md", out / "families.json"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="the families sweep file (sweeps/mnist1d_families*.yaml)")
    parser.add_argument("--out", type=Path, help="output folder (default: <root>/report)")
    parser.add_argument("--trials", type=Path, help="a trials.csv of `sweep report` to read")
    args = parser.parse_args(argv)
    for path in write_families_report(args.sweep, args.out, args.trials):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
