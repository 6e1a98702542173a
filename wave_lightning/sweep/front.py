"""A sweep's best trials: the best one of a single objective, the Pareto front of several;
with constraints, among the feasible trials only."""

import optuna
from optuna.trial import FrozenTrial

from .spec import Sweep


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several), by trial number; empty
    when no complete trial is feasible."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    try:
        return [study.best_trial]
    except ValueError:  # trials complete, none of them feasible
        return []


def values_text(sweep: Sweep, trial: FrozenTrial) -> str:
    """'name=value ...' of the trial's objectives."""
    names = [o.name for o in sweep.objectives]
    return " ".join(f"{n}={v:.6g}" for n, v in zip(names, trial.values, strict=True))


def is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.constraints.values())


def best_lines(study: optuna.Study, sweep: Sweep) -> list[str]:
    """'best: trial N metric=value params' or one 'Pareto front' line per trial, each with its
    run folder; a line saying so when no complete trial meets the constraints."""
    best = best_trials(study)
    if not best:
        keys = ", ".join(c.key for c in sweep.constraints)
        return [f"best: none; no complete trial meets the constraints ({keys})"]
    label = "Pareto front" if sweep.is_multi else "best"
    lines = [f"Pareto front: {len(best)} trials"] if sweep.is_multi else []
    for trial in best:
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        folder = sweep.root / trial.user_attrs.get("run_dir", f"trial-{trial.number:04d}")
        lines.append(
            f"{label}: trial {trial.number} {values_text(sweep, trial)} {params} ({folder})"
        )
    return lines
