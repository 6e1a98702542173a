"""Tables, learning curves and space-time plots of docs/reproduction.md from finished sweeps.

Reads the studies of the copy (Table 4) and adding (Table 1) reproduction sweeps, prints the
paper's numbers beside ours (mean ± std over seeds) as markdown, and writes results.json, the
learning curves and, via `wave-lightning analyze`, space-time plots of seed-0 checkpoints.
Copy losses are printed in the paper's Table 4 units, the authors' script's (mean per-step
cross-entropy / 50, their test batch): a sweep with the plain mean is converted, one trained with
loss_reduction=mean_over_batch is already in them. `--from-json` prints the copy table from a
committed results.json without the studies.

    python scripts/reproduction_report.py --copy sweeps/copy_table4_cpu.yaml \
        --adding sweeps/adding_table1_cpu.yaml --out docs/reproduction
    python scripts/reproduction_report.py --from-json docs/reproduction/results.json
"""

import argparse
import json
import math
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

from wave_lightning.analysis.cli import main as analyze  # noqa: E402
from wave_lightning.run.folder import RunFolder  # noqa: E402
from wave_lightning.sweep.report import ablation_groups, complete, table_row  # noqa: E402
from wave_lightning.sweep.significance import summarize  # noqa: E402
from wave_lightning.sweep.spec import Sweep, load_sweep  # noqa: E402
from wave_lightning.sweep.storage import read_study  # noqa: E402

# Paper (Keller et al., ICLR 2024), Table 4: copy test loss at T = 0, 10, 30, 80.
PAPER_COPY = {
    "wrnn": [9e-12, 1e-10, 8e-11, 1e-11],
    "wrnn_no_v_init": [1e-11, 2e-11, 4e-10, 4e-11],
    "wrnn_no_shift_init": [5e-11, 3e-10, 7e-4, 6e-4],
    "wrnn_no_init": [8e-10, 1e-4, 3e-4, 7e-4],
    "irnn": [1e-4, 3e-3, 2e-3, 1e-3],
    "irnn_sigma_init": [1e-8, 1e-7, 2e-7, 2e-5],
    "irnn_sigma_v_init": [1e-7, 1e-7, 1e-6, 8e-6],
}
COPY_DELAYS = [0, 10, 30, 80]
AUTHORS_DELAYS = [10, 20, 50, 100]  # their copy script's T, paired by position with COPY_DELAYS
AUTHORS_TEST_BATCH = 50  # Table 4's unit: the mean per-step cross-entropy / their test batch
# Paper Table 1: adding test MSE and iterations to solve at T = 100, 200, 400 (None: never).
PAPER_ADDING = {
    "wrnn": {"mse": [4e-6, 2e-5, 4e-5], "solved": [300, 1000, 1000]},
    "irnn": {"mse": [1e-5, 4e-5, 1e-4], "solved": [14000, 22000, 30000]},
}
ADDING_LENGTHS = [100, 200, 400]
MODEL = "model"


def curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """Steps and values of `metric` where the run logged it."""
    rows = [r for r in RunFolder(run_dir).metric_rows() if r.get(metric)]
    return [int(r["step"]) for r in rows], [float(r[metric]) for r in rows]


def solved_step(run_dir: Path, metric: str = "val/solved_step") -> int | None:
    """The step the run logged as `metric` (val/solved_step: first val MSE <= 0.05;
    train/solved_step: the authors' first logged training batch MSE <= 0.05), None if never."""
    steps = curve(run_dir, metric)[1]
    return int(steps[-1]) if steps else None


def run_dir(sweep: Sweep, trial: FrozenTrial) -> Path:
    return sweep.root / trial.user_attrs["run_dir"]


def sci(value: float) -> str:
    return f"{value:.1e}"


def loss_cell(values: list[float]) -> str:
    """Mean ± std over seeds and, as the spread matters on a log scale, the per-seed range;
    one seed's value alone."""
    if len(values) == 1:
        return sci(values[0])
    summary = summarize(values)
    spread = f"({sci(min(values))}–{sci(max(values))})"
    return f"{sci(summary.mean)} ± {sci(summary.std or 0.0)} {spread}"


def steps_cell(steps: list[int | None], max_steps: int) -> str:
    """Per-seed solve steps, 'not solved within N' for runs that never reached MSE <= 0.05."""
    if not steps:
        return "-"
    solved = [s for s in steps if s is not None]
    text = ", ".join(str(s) if s is not None else f"not in {max_steps}" for s in steps)
    if len(solved) == len(steps) > 1:
        return f"{statistics.fmean(solved):.0f} ({text})"
    return text


def max_steps(sweep: Sweep) -> int:
    """The trainer.max_steps the sweep's args set."""
    value = [a.split("=", 1)[1] for a in sweep.args if a.startswith("--trainer.max_steps=")]
    return int(value[-1])


def groups_by(study, sweep: Sweep) -> dict[tuple, list[FrozenTrial]]:
    """Complete trials by (model, length), each group ordered by seed."""
    groups = ablation_groups(study, sweep)
    return {key: sorted(trials, key=lambda t: t.params["seed"]) for key, trials in groups.items()}


def has_arg(sweep: Sweep, arg: str) -> bool:
    return arg in sweep.args


def copy_layout(sweep: Sweep) -> str:
    """The copy layout a sweep trains: "authors" when its args select it, else "paper"."""
    return "authors" if has_arg(sweep, "--data.layout=authors") else "paper"


def to_authors_units(sweep: Sweep) -> float:
    """The factor that puts a copy sweep's logged losses in Table 4's units."""
    already = has_arg(sweep, "--model.init_args.loss_reduction=mean_over_batch")
    return 1.0 if already else 1.0 / AUTHORS_TEST_BATCH


def copy_delays(sweep: Sweep) -> list[int]:
    """The delay levels of a copy sweep, in the order of the paper's columns (by position)."""
    factor = next(f for f in sweep.factors if f.name.endswith("delay"))
    return list(factor.distribution.choices)


def paper_column(delay: int, layout: str) -> int:
    """The index of the paper's Table 4 column a trained delay is compared with: the paper's
    T itself, or the authors' script's T paired by position (AUTHORS_DELAYS)."""
    return (AUTHORS_DELAYS if layout == "authors" else COPY_DELAYS).index(delay)


def copy_table(
    measures: dict[str, dict[tuple, list[float]]], delays: list[int], layout: str
) -> str:
    """Table 4 in the authors' units: per row and trained delay the paper's test loss, then ours.

    `measures` maps a column name (e.g. "ours") to per-(model, delay) seed losses already in
    those units; the no-memory baseline goes in the first of them.
    """
    header = ["model"]
    for delay in delays:
        name = f"T={COPY_DELAYS[paper_column(delay, layout)]}"
        name += "" if layout == "paper" else f" (script T={delay})"
        header += [f"{name} {who}" for who in ("paper", *measures)]
    lines = [table_row(header), table_row(["---"] * len(header))]
    for model, paper in PAPER_COPY.items():
        cells = [model]
        for delay in delays:
            cells.append(sci(paper[paper_column(delay, layout)]))
            for losses in measures.values():
                ours = losses.get((model, delay), [])
                cells.append(loss_cell(ours) if ours else "-")
        lines.append(table_row(cells))
    row = ["no memory of the symbols (blanks right, uniform guess at the recall steps)"]
    for delay in delays:
        guess = sci(memoryless_loss(delay, layout) / AUTHORS_TEST_BATCH)
        row += ["", guess, *[""] * (len(measures) - 1)]
    lines.append(table_row(row))
    return "\n".join(lines)


def memoryless_loss(delay: int, layout: str = "paper", symbols: int = 8, length: int = 10) -> float:
    """Mean per-step copy loss of a model that gets every blank right and guesses the recalled
    symbols uniformly: length ln(symbols) over the sequence length (delay + 2 length, or the
    authors' delay + length)."""
    steps = delay + (length if layout == "authors" else 2 * length)
    return length * math.log(symbols) / steps


def copy_losses(
    groups: dict[tuple, list[FrozenTrial]], sweep: Sweep
) -> dict[str, dict[tuple, list[float]]]:
    """Per (model, delay) the seeds' losses in the authors' units: the best checkpoint's test
    loss, and the validation loss at its best during training (the authors' "best test loss")
    and at the end."""
    factor = to_authors_units(sweep)
    metric = sweep.metric

    def final(trial: FrozenTrial) -> float:
        return curve(run_dir(sweep, trial), metric)[1][-1]

    pick = {
        "ours, test (best ckpt)": lambda t: t.user_attrs["test/loss"],
        "ours, best val": lambda t: t.value,
        "ours, final val": final,
    }
    return {
        name: {key: [value(t) * factor for t in ts] for key, ts in groups.items()}
        for name, value in pick.items()
    }


def copy_losses_from_json(results: dict) -> dict[tuple, list[float]]:
    """The same from a results.json of a sweep with the plain mean (as committed), converted."""
    losses: dict[tuple, list[float]] = {}
    for run in sorted(results["copy"]["runs"], key=lambda r: r["seed"]):
        loss = run["test/loss"] / AUTHORS_TEST_BATCH
        losses.setdefault((run["model"], run["length"]), []).append(loss)
    return losses


def lengths(sweep: Sweep) -> list[int]:
    """The sequence lengths (seq_len levels) an adding sweep trains, ascending."""
    factor = next(f for f in sweep.factors if f.name.endswith("seq_len"))
    return sorted(factor.distribution.choices)


def solve_criteria(sweep: Sweep) -> list[tuple[str, str]]:
    """The solve steps an adding sweep logs: ours (validation), and the authors' (training
    batch) where its args ask for it."""
    criteria = [("val/solved_step", "solved at, ours (validation)")]
    if any(a.startswith("--model.init_args.solved_train_every=") for a in sweep.args):
        criteria.append(("train/solved_step", "solved at, ours (training batch)"))
    return criteria


def adding_table(groups: dict[tuple, list[FrozenTrial]], sweep: Sweep) -> str:
    """Table 1: per model and T the paper's test MSE and solve step, then ours."""
    columns = lengths(sweep)
    header = ["model", "", *(f"T={t}" for t in columns)]
    lines = [table_row(header), table_row(["---"] * len(header))]
    limit = max_steps(sweep)
    for model, paper in PAPER_ADDING.items():
        theirs = {
            key: [values[ADDING_LENGTHS.index(t)] for t in columns] for key, values in paper.items()
        }
        trials = [groups.get((model, t), []) for t in columns]
        mse = [loss_cell([t.user_attrs["test/mse"] for t in ts]) if ts else "-" for ts in trials]
        lines += [
            table_row([model, "test MSE, paper", *map(sci, theirs["mse"])]),
            table_row([model, "test MSE, ours", *mse]),
            table_row([model, "solved at, paper", *map(str, theirs["solved"])]),
        ]
        for metric, name in solve_criteria(sweep):
            steps = [
                steps_cell([solved_step(run_dir(sweep, t), metric) for t in ts], limit)
                for ts in trials
            ]
            lines.append(table_row([model, name, *steps]))
    return "\n".join(lines)


def plot_curves(
    groups: dict[tuple, list[FrozenTrial]],
    sweep: Sweep,
    models: dict[str, str],
    lengths: list[int],
    metric: str,
    path: Path,
    label: Callable[[int], str],
    paper: dict[tuple, float],
    scale: float = 1.0,
) -> None:
    """One panel per length: `metric` (times `scale`) against step for every seed of each model,
    log scale, with the paper's value for (model, length) as a dotted line of the same colour."""
    size = (max(7.0, 4.0 * len(lengths)), 4.0)
    figure, axes = plt.subplots(1, len(lengths), figsize=size, squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        for (model, name), color in zip(models.items(), plt.cm.tab10.colors, strict=False):
            for index, trial in enumerate(groups.get((model, length), [])):
                steps, values = curve(run_dir(sweep, trial), metric)
                values = [v * scale for v in values]
                ax.plot(steps, values, color=color, alpha=0.8, label=name if index == 0 else None)
            if (model, length) in paper:
                ax.axhline(paper[model, length], color=color, linestyle=":", linewidth=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_title(label(length))
    axes[0][0].set_ylabel(f"{metric}, dotted: paper")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def paper_values(sweep: Sweep, task: str) -> dict[tuple, float]:
    """The paper's test loss (copy, Table 4's unit) or MSE (adding) per trained (model, length)."""
    if task == "copy":
        layout = copy_layout(sweep)
        return {
            (model, d): values[paper_column(d, layout)]
            for model, values in PAPER_COPY.items()
            for d in copy_delays(sweep)
        }
    return {
        (model, t): paper["mse"][ADDING_LENGTHS.index(t)]
        for model, paper in PAPER_ADDING.items()
        for t in lengths(sweep)
    }


def best_checkpoint(sweep: Sweep, trial: FrozenTrial) -> Path:
    """The run's best checkpoint, the monitored one beside last.ckpt (its test metrics' source)."""
    found = RunFolder(run_dir(sweep, trial)).best_checkpoints()
    if not found:
        raise FileNotFoundError(f"no best checkpoint in {run_dir(sweep, trial)}")
    return found[-1]


def spacetime(sweep: Sweep, trial: FrozenTrial, out: Path, name: str) -> dict:
    """Space-time plot and 2D FFT of a trial's best checkpoint; its wave measures."""
    folder = out / "analysis" / name
    checkpoint = best_checkpoint(sweep, trial)
    analyze(["--ckpt", str(checkpoint), "--out", str(folder), "--max-rings", "3"])
    for figure in ("spacetime", "fft"):
        shutil.copy(folder / f"{figure}.png", out / f"{name}_{figure}.png")
    measures = json.loads((folder / "measures.json").read_text())
    shutil.rmtree(out / "analysis")
    return measures


def wall_time(study) -> dict:
    """Summed trial durations and the span from the first start to the last completion."""
    trials = complete(study)
    if not trials:
        return {"trials": 0, "sum_trial_s": 0, "span_s": 0}
    starts = [t.datetime_start for t in trials]
    ends = [t.datetime_complete for t in trials]
    seconds = sum((end - start).total_seconds() for start, end in zip(starts, ends, strict=True))
    span = (max(ends) - min(starts)).total_seconds()
    return {"trials": len(trials), "sum_trial_s": round(seconds), "span_s": round(span)}


def records(groups: dict[tuple, list[FrozenTrial]], sweep: Sweep) -> list[dict]:
    """Every trial's factors, seed, test metrics, solve step and duration, for results.json."""
    rows = []
    for (model, length), trials in groups.items():
        for trial in trials:
            tests = {k: v for k, v in trial.user_attrs.items() if k.startswith("test/")}
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
            row = {"model": model, "length": length, "seed": trial.params["seed"], **tests}
            if "test/mse" in tests:
                row["solved_step"] = solved_step(run_dir(sweep, trial))
                row["train_solved_step"] = solved_step(run_dir(sweep, trial), "train/solved_step")
            row["best_" + sweep.metric] = trial.value  # the best validation during training
            row["final_" + sweep.metric] = curve(run_dir(sweep, trial), sweep.metric)[1][-1]
            rows.append({**row, "run_dir": trial.user_attrs["run_dir"], "seconds": round(seconds)})
    return rows


def summary(path: str, study, groups: dict[tuple, list[FrozenTrial]], sweep: Sweep) -> dict:
    return {"sweep": path, "wall": wall_time(study), "runs": records(groups, sweep)}


def open_sweep(path: str) -> tuple[Sweep, object, dict[tuple, list[FrozenTrial]]]:
    sweep = load_sweep(path)
    study = read_study(sweep)
    return sweep, study, groups_by(study, sweep)


def copy_report(path: str, out: Path) -> tuple[dict, tuple[Sweep, dict], int]:
    """Print the copy table and draw its curves: the summary, (sweep, groups), the longest T."""
    sweep, study, groups = open_sweep(path)
    print("## Copy (Table 4): loss in Table 4's unit (mean CE / 50)")
    print("mean ± std over seeds (min–max)\n")
    delays = copy_delays(sweep)
    print(copy_table(copy_losses(groups, sweep), delays, copy_layout(sweep)), "\n")
    rows = {model: model for model in PAPER_COPY}
    plot_curves(groups, sweep, rows, delays, "val/loss", out / "copy_curves.png",
                lambda t: f"copy, T={t}", paper_values(sweep, "copy"),
                to_authors_units(sweep))  # fmt: skip
    return summary(path, study, groups, sweep), (sweep, groups), max(delays)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copy", default="sweeps/copy_table4_cpu.yaml", help="'': none")
    parser.add_argument("--adding", default="sweeps/adding_table1_cpu.yaml", help="'': none")
    parser.add_argument(
        "--adding-long", default="sweeps/adding_t100_long_cpu.yaml", help="'': none"
    )
    parser.add_argument("--out", default="docs/reproduction", type=Path)
    parser.add_argument("--from-json", type=Path, help="print the copy table from results.json")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        print(copy_table({"ours": copy_losses_from_json(results)}, COPY_DELAYS, "paper"))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results, opened, plotted = {}, {}, []  # plotted: (task, sweep name, length) to draw
    if args.copy:
        results["copy"], opened["copy"], delay = copy_report(args.copy, args.out)
        plotted.append(("copy", "copy", delay))
    models = {"wrnn": "wRNN", "irnn": "iRNN"}
    for name, path in (("adding", args.adding), ("adding_long", args.adding_long)):
        if not path:
            continue
        sweep, study, groups = open_sweep(path)
        print(f"## Adding (Table 1): {path}, {max_steps(sweep)} steps\n")
        print(adding_table(groups, sweep), "\n")
        plot_curves(groups, sweep, models, lengths(sweep), "val/mse",
                    args.out / f"{name}_curves.png", lambda t: f"adding, T={t}",
                    paper_values(sweep, "adding"))  # fmt: skip
        results[name] = summary(path, study, groups, sweep)
        opened[name] = (sweep, groups)
    if "adding_long" in opened:
        plotted.append(("adding", "adding_long", 100))
    measures = {
        f"{model}_{task}": spacetime(sweep, groups[key][0], args.out, f"{task}_{model}")
        for task, name, length in plotted
        for sweep, groups in [opened[name]]
        for model in ("wrnn", "irnn")
        if (key := (model, length)) in groups
    }
    results["wave_measures"] = measures
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    for name in opened:
        print(f"{name} wall time: {results[name]['wall']}")
    for name, values in measures.items():
        speed = values.get("speed")
        print(f"{name}: speed {speed if speed is None else round(speed, 3)}", end="; ")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
