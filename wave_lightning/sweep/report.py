"""What a sweep produced: its status, a CSV of trials, the ablation table, the best configs
(one, or one per Pareto trial), plots."""

import csv
import importlib.util
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402
from optuna.importance import (  # noqa: E402
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from ..run.folder import RunFolder  # noqa: E402
from .claims import origin, retries  # noqa: E402
from .front import best_lines, best_trials, values_text  # noqa: E402
from .pareto import pareto_markdown, plot_pareto  # noqa: E402
from .render import save, table_row  # noqa: E402
from .significance import (  # noqa: E402
    CONFIDENCE,
    TEST_NAME,
    Comparison,
    compare,
    paired,
    summarize,  # noqa: E402
)
from .spec import Sweep  # noqa: E402
from .storage import storage_url  # noqa: E402
from .trial_callback import STOPPED_ATTR, TrialReporter  # noqa: E402

REPORTER = f"{TrialReporter.__module__}.{TrialReporter.__name__}"


def complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def leading(trial: FrozenTrial) -> float:
    """The trial's value of the leading (first) objective."""
    return trial.values[0]


def describe(trial: FrozenTrial) -> str:
    """'name=value ...' of a trial's parameters."""
    return " ".join(f"{k}={v}" for k, v in trial.params.items())


def status_text(study: optuna.Study, sweep: Sweep) -> str:
    """Trials by state, the best so far, what runs where, and what happened to each attempt:
    why it failed, which trial retried it and from which step it resumed."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    lines = [
        f"study {sweep.study} in {storage_url(sweep)}: {len(trials)} trials "
        + (", ".join(f"{s} {n}" for s, n in sorted(states.items())) or "none")
    ]
    if complete(study):
        lines += best_lines(study, sweep)
    if STOPPED_ATTR in study.user_attrs:
        lines.append(f"stopped: {study.user_attrs[STOPPED_ATTR]}")
    retried = retries(study)
    for trial in trials:
        lines += trial_events(trial, sweep, retried)
    return "\n".join(lines)


def trial_events(trial: FrozenTrial, sweep: Sweep, retried: dict[int, int]) -> list[str]:
    """The status lines of one trial: running where, failed why and retried as, resumed from."""
    history = trial.system_attrs.get("retry_history")
    resumed = trial.user_attrs.get("resumed_from_step")
    retry = f"trial {trial.number} (retry of trial {history[-1]})" if history else None
    if trial.state == TrialState.RUNNING:
        worker = trial.user_attrs.get("worker", {})
        return [
            f"running: {retry or f'trial {trial.number}'} on {worker.get('host')}:"
            f"{worker.get('pid')} since {trial.datetime_start:%Y-%m-%d %H:%M:%S}"
            + (f", resumed from step {resumed}" if resumed is not None else "")
        ]
    lines = []
    if retry and resumed is not None:
        lines.append(f"resumed: {retry} from step {resumed}, {trial.state.name}")
    if trial.state == TrialState.FAIL:
        then = f"; retried as trial {retried[trial.number]}" if trial.number in retried else ""
        lines.append(f"failed: trial {trial.number}: {fail_text(trial, sweep)}{then}")
    return lines


def fail_text(trial: FrozenTrial, sweep: Sweep) -> str:
    """Why a trial failed; on a database a trial without a recorded reason lost its heartbeat."""
    if trial.user_attrs.get("fail_reason"):
        return trial.user_attrs["fail_reason"]
    if sweep.storage is None:
        return "no reason recorded"
    worker = trial.user_attrs.get("worker", {})
    return (
        f"no heartbeat for over {sweep.heartbeat['grace']} s from its worker "
        f"{worker.get('host')}:{worker.get('pid')} (killed, frozen or cut off)"
    )


def trial_rows(study: optuna.Study, sweep: Sweep) -> list[dict]:
    """One flat row per trial: state, value, parameters, run directory and recorded attributes."""
    rows, retried = [], retries(study)
    for trial in study.get_trials(deepcopy=False):
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("worker", "command")}
        end, start = trial.datetime_complete, trial.datetime_start
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                **objective_values(sweep, trial),
                **{f"params_{k}": v for k, v in trial.params.items()},
                "retry_of": origin(trial) if origin(trial) != trial.number else None,
                "retried_as": retried.get(trial.number),
                **attrs,
                "datetime_start": start,
                "datetime_complete": end,
                "duration_s": (end - start).total_seconds() if end and start else None,
            }
        )
    return rows


def objective_values(sweep: Sweep, trial: FrozenTrial) -> dict[str, float | None]:
    """Each objective's value of the trial (None until it is complete)."""
    values = trial.values or [None] * len(sweep.objectives)
    return {o.name: v for o, v in zip(sweep.objectives, values, strict=True)}


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def cell(values: list[float]) -> str:
    """Mean ± sample standard deviation (the mean alone for one value)."""
    summary = summarize(values)
    return f"{summary.mean:.4g}" + ("" if summary.std is None else f" ± {summary.std:.2g}")


def interval(values: list[float]) -> str:
    """The 95% interval of the mean of `values`, '' for a single value."""
    summary = summarize(values)
    return "" if summary.low is None else f"[{summary.low:.4g}, {summary.high:.4g}]"


def ablation_groups(study: optuna.Study, sweep: Sweep) -> dict[tuple, list[FrozenTrial]]:
    """Complete trials grouped by their factor levels (every parameter but the seed), in order."""
    factors = [f.name for f in sweep.factors]
    order = {f.name: list(getattr(f.distribution, "choices", [])) for f in sweep.factors}

    def rank(key: tuple) -> tuple:
        return tuple(
            order[n].index(v) if v in order[n] else v for n, v in zip(factors, key, strict=True)
        )

    groups: dict[tuple, list[FrozenTrial]] = {}
    for trial in complete(study):
        groups.setdefault(tuple(trial.params[n] for n in factors), []).append(trial)
    return {key: groups[key] for key in sorted(groups, key=rank)}


def metric_columns(trials: list[FrozenTrial], sweep: Sweep) -> dict[str, list[float]]:
    """The objectives and every recorded test metric of a group of trials."""
    columns = {o.name: [t.values[i] for t in trials] for i, o in enumerate(sweep.objectives)}
    for name in sorted({k for t in trials for k in t.user_attrs if k.startswith("test/")}):
        columns[name] = [t.user_attrs[name] for t in trials if name in t.user_attrs]
    return columns


def short_names(names: list[str]) -> list[str]:
    """The last part of each dotted name when those are distinct, else the full names."""
    last = [name.rsplit(".", 1)[-1] for name in names]
    return last if len(set(last)) == len(last) else names


def ablation_markdown(study: optuna.Study, sweep: Sweep) -> str:
    """Mean ± std and 95% interval over seeds for every combination of factor levels and for
    every level, then every level against its factor's reference level, paired by seed."""
    factors = list(factor_names(sweep).values())
    groups = ablation_groups(study, sweep)
    metrics = list(metric_columns(complete(study), sweep)) if groups else [sweep.metric]
    ci = f"{CONFIDENCE:.0%} CI"
    header = [*factors, "seeds", metrics[0], ci, *metrics[1:]]
    lines = [
        f"### {sweep.study}: {sweep.metric} ({sweep.direction}), mean ± std over seeds",
        "",
        table_row(header),
        table_row(["---"] * len(header)),
    ]
    for key, trials in groups.items():
        columns = metric_columns(trials, sweep)
        values = [cell(columns[m]) if columns.get(m) else "" for m in metrics]
        spread = interval(columns[sweep.metric])
        lines.append(table_row([*map(str, key), str(len(trials)), values[0], spread, *values[1:]]))
    lines += ["", f"### {sweep.study}: every factor level, mean ± std over all its trials", ""]
    lines += [table_row(["factor", "level", "trials", sweep.metric, ci]), table_row(["---"] * 5)]
    for index, name in enumerate(factors):
        levels: dict = {}
        for key, trials in groups.items():
            levels.setdefault(key[index], []).extend(leading(t) for t in trials)
        for level, values in levels.items():
            row = [name, str(level), str(len(values)), cell(values), interval(values)]
            lines.append(table_row(row))
    return "\n".join(lines) + "\n" + comparisons_markdown(comparisons(study, sweep), sweep)


def comparisons(study: optuna.Study, sweep: Sweep) -> list[Comparison]:
    """Every level of every grid factor against the factor's reference level, paired by seed."""
    by_seed = {
        key: {t.params["seed"]: leading(t) for t in trials}
        for key, trials in ablation_groups(study, sweep).items()
    }
    found = []
    for index, (name, short) in enumerate(factor_names(sweep).items()):
        reference = sweep.reference.get(name)
        if reference is None:
            continue
        for level in sweep.space[name].choices:
            if level != reference:
                pairs = paired(by_seed, index, level, reference)
                found.append(compare(short, level, reference, pairs))
    return found


def comparisons_markdown(found: list[Comparison], sweep: Sweep) -> str:
    """The paired comparisons as a table: difference (level minus reference), its interval,
    the p-value and d_z, or why a level could not be tested."""
    head = ["factor", "level", "reference", "pairs", f"difference in {sweep.metric}"]
    head += [f"{CONFIDENCE:.0%} CI", "p", "d_z", "note"]
    lines = ["", f"### {sweep.study}: each level against its reference, {TEST_NAME}", ""]
    lines += [table_row(head), table_row(["---"] * len(head))]
    for c in found:
        d = c.difference
        cells = [c.factor, str(c.level), str(c.reference), str(d.n if d else 0)]
        cells += [f"{d.mean:.4g}" if d else "", f"[{d.low:.4g}, {d.high:.4g}]" if d else ""]
        cells += [f"{c.p_value:.3g}" if c.p_value is not None else ""]
        cells += [f"{c.effect:.3g}" if c.effect is not None else "", c.note]
        lines.append(table_row(cells))
    return "\n".join(lines) + "\n"


def best_config(best: FrozenTrial, sweep: Sweep) -> str:
    """A best trial's saved run config, made reusable: no sweep callback, no resume path."""
    config = yaml.safe_load(RunFolder(sweep.root / best.user_attrs["run_dir"]).config.read_text())
    callbacks = [
        c for c in config["trainer"].get("callbacks") or [] if c.get("class_path") != REPORTER
    ]
    config["trainer"]["callbacks"] = callbacks or None
    config["trainer"]["default_root_dir"] = None
    config["ckpt_path"] = None
    kind = "Pareto trial" if sweep.is_multi else "Best trial"
    head = (
        f"# {kind} {best.number} of sweep {sweep.study}: {values_text(sweep, best)}\n"
        f"# {describe(best)}\n# wave-lightning fit --config this.yaml\n"
    )
    return head + yaml.safe_dump(config, sort_keys=False)


def value_scale(values: list[float]) -> dict:
    """set_yscale arguments: log when the positive values span more than two decades, symlog
    (linear below the smallest positive value) when zeros or negatives are among them."""
    positive = [v for v in values if v > 0]
    if not positive or max(positive) <= 100 * min(positive):
        return {"value": "linear"}
    if len(positive) == len(values):
        return {"value": "log"}
    return {"value": "symlog", "linthresh": min(positive)}


def factor_names(sweep: Sweep) -> dict[str, str]:
    """Each factor's name as ablation.md and the plots show it (see short_names)."""
    names = [f.name for f in sweep.factors]
    return dict(zip(names, short_names(names), strict=True))


def factor_labels(sweep: Sweep, keys: list[tuple]) -> list[str]:
    """One tick label per group: 'factor=level' lines, with the factors' short names."""
    names = factor_names(sweep).values()
    return ["\n".join(f"{n}={v}" for n, v in zip(names, key, strict=True)) for key in keys]


def plot_ablation(study: optuna.Study, sweep: Sweep, path: Path) -> None:
    """The ablation as bars (mean over seeds) with error bars (the 95% interval of the mean),
    one bar per group."""
    groups = ablation_groups(study, sweep)
    labels = factor_labels(sweep, list(groups))
    summaries = [summarize([leading(t) for t in trials]) for trials in groups.values()]
    means = [s.mean for s in summaries]
    low = [s.mean - s.low if s.low is not None else 0.0 for s in summaries]
    high = [s.high - s.mean if s.high is not None else 0.0 for s in summaries]
    figure, ax = plt.subplots(figsize=(2.0 + 0.7 * len(labels), 4.5))
    ax.bar(range(len(summaries)), means, yerr=[low, high], capsize=4)
    ticks = {"fontsize": 7, "rotation": 45, "ha": "right", "rotation_mode": "anchor"}
    ax.set_xticks(range(len(labels)), labels, **ticks)
    ax.set_ylabel(f"{sweep.metric} (mean, {CONFIDENCE:.0%} CI over seeds)")
    ax.set_yscale(**value_scale(means))  # losses of solved and unsolved runs differ by decades
    ax.set_title(f"{sweep.study}: {sweep.metric} by factor levels")
    save(ax, path)


def plot_history(study: optuna.Study, sweep: Sweep, path: Path) -> None:
    """Every complete trial's value by trial number, and the best so far."""
    trials = sorted(complete(study), key=lambda t: t.number)
    values = [leading(t) for t in trials]
    better = min if sweep.direction == "minimize" else max
    best = [better(values[: i + 1]) for i in range(len(values))]
    figure, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.plot([t.number for t in trials], values, "o", ms=4, label="trial")
    ax.step([t.number for t in trials], best, where="post", color="C3", label="best so far")
    ax.set_yscale(**value_scale(values))
    ax.set(xlabel="trial number", ylabel=sweep.metric, title=f"{sweep.study}: history")
    ax.legend()
    save(ax, path)


def importance_evaluator() -> tuple[BaseImportanceEvaluator, str]:
    """fANOVA when scikit-learn is installed (the `report` extra), else Optuna's default.

    Optuna's default, PED-ANOVA, compares the best trials' levels with all trials': in an
    ablation where two factors together decide between solved and unsolved runs, it gives
    every factor the same importance, the one that changes nothing included."""
    if importlib.util.find_spec("sklearn") is None:
        return PedAnovaImportanceEvaluator(), "PED-ANOVA (Optuna's default; no scikit-learn)"
    return FanovaImportanceEvaluator(seed=0), "fANOVA"


def factor_importances(study: optuna.Study, sweep: Sweep, params: list[str]) -> dict[str, float]:
    """Each factor's importance for the objective (summing to 1), by its short name."""
    evaluator, _ = importance_evaluator()
    importances = optuna.importance.get_param_importances(
        study, evaluator=evaluator, params=params, normalize=True, target=leading
    )
    return {factor_names(sweep)[p]: float(importances[p]) for p in params}


def plot_importances(study: optuna.Study, sweep: Sweep, params: list[str], path: Path) -> None:
    """The factors' importances as horizontal bars, the largest on top, the evaluator named."""
    shown = factor_importances(study, sweep, params)
    order = sorted(shown, key=shown.get)
    figure, ax = plt.subplots(figsize=(6.0, 0.5 * len(order) + 1.5))
    ax.barh(order, [shown[n] for n in order])
    for y, label in enumerate(order):
        ax.text(shown[label], y, f" {shown[label]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set(xlabel=f"importance for {sweep.metric} (sums to 1)")
    ax.set_title(f"{sweep.study}: factor importances by {importance_evaluator()[1]}")
    save(ax, path)


def varied_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters that take more than one value among `trials`."""
    names = {k for t in trials for k in t.params}
    return sorted(n for n in names if len({repr(t.params.get(n)) for t in trials}) > 1)


def write_plots(study: optuna.Study, sweep: Sweep, out: Path) -> list[Path]:
    """History, factor importances (when a factor varies) and the ablation bars."""
    plot_history(study, sweep, out / "history.png")
    written = [out / "history.png"]
    varied = varied_params(complete(study))
    params = [f.name for f in sweep.factors if f.name in varied]
    if len(complete(study)) > 1 and params:
        plot_importances(study, sweep, params, out / "importances.png")
        written.append(out / "importances.png")
    plot_ablation(study, sweep, out / "ablation.png")
    return [*written, out / "ablation.png"]


def write_best(study: optuna.Study, sweep: Sweep, out: Path) -> list[Path]:
    """best.yaml, or for several objectives pareto.md, pareto.png and best/trial-NNNN.yaml for
    each Pareto trial; the files written (none when no complete trial is feasible)."""
    best = best_trials(study)
    if not sweep.is_multi:
        if best:
            (out / "best.yaml").write_text(best_config(best[0], sweep))
        return [out / "best.yaml"] if best else []
    folder = out / "best"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("trial-*.yaml"):  # the front of an earlier report
        stale.unlink()
    written = [out / "pareto.md", out / "pareto.png"]
    (out / "pareto.md").write_text(pareto_markdown(study, sweep, best))
    plot_pareto(study, sweep, out / "pareto.png")
    for trial in best:
        path = folder / f"trial-{trial.number:04d}.yaml"
        path.write_text(best_config(trial, sweep))
        written.append(path)
    return written


def write_report(study: optuna.Study, sweep: Sweep, out: Path) -> list[Path]:
    """trials.csv, ablation.md, the best configs and the plots under `out`; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(trial_rows(study, sweep), out / "trials.csv")
    (out / "ablation.md").write_text(ablation_markdown(study, sweep))
    written = [out / "trials.csv", out / "ablation.md"]
    if complete(study):
        written += [*write_best(study, sweep, out), *write_plots(study, sweep, out)]
    return written
