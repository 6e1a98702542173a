"""The Pareto front of a multi-objective sweep: a table of its trials and Optuna's plot."""

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from .front import is_feasible
from .render import save, table_row
from .spec import Sweep

PLOTTED = (2, 3)  # how many objectives Optuna's Pareto plot draws


def pareto_markdown(study: optuna.Study, sweep: Sweep, front: list[FrozenTrial]) -> str:
    """The Pareto trials with their objectives, parameters and run folders, and how many
    complete trials met the constraints."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = [f"{o.name} ({o.direction})" for o in sweep.objectives]
    lines = [f"### {sweep.study}: Pareto front of {', '.join(names)}", ""]
    feasible = sum(is_feasible(t) for t in done)
    summary = f"{len(front)} of {len(done)} complete trials are on the front"
    if sweep.constraints:
        keys = ", ".join(c.key for c in sweep.constraints)
        summary += f"; {feasible} meet the constraints ({keys}), the front is drawn from those"
    lines += [summary + ".", ""]
    header = ["trial", *(o.name for o in sweep.objectives), "parameters", "run folder"]
    lines += [table_row(header), table_row(["---"] * len(header))]
    for trial in front:
        values = [f"{v:.6g}" for v in trial.values]
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        lines.append(table_row([str(trial.number), *values, params, trial.user_attrs["run_dir"]]))
    return "\n".join(lines) + "\n"


def label_points(ax: plt.Axes, study: optuna.Study, sweep: Sweep) -> None:
    """Name each complete trial's point by its factor levels (the seed left out)."""
    factors = [f.name for f in sweep.factors]
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        label = " ".join(str(trial.params[n]) for n in factors if n in trial.params)
        ax.annotate(label, trial.values, xytext=(4, 4), textcoords="offset points", fontsize=7)


def plot_pareto(study: optuna.Study, sweep: Sweep, path: Path) -> None:
    """Optuna's Pareto-front plot (2 or 3 objectives; infeasible trials greyed), or a figure
    saying why there is none."""
    names = [o.name for o in sweep.objectives]
    if len(names) in PLOTTED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=names)
        ax.set_title(f"{sweep.study}: Pareto front")
        if len(names) == 2:
            label_points(ax, study, sweep)
    else:
        _, ax = plt.subplots(figsize=(6.0, 1.5))
        ax.axis("off")
        ax.text(0, 0.5, f"{len(names)} objectives: see pareto.md (a plot takes 2 or 3)")
    save(ax, path)
