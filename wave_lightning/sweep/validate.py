"""Every trial's `fit` arguments checked against the config schema before the first trial.

Each point is parsed by the fit command's own LightningCLI parser and its model, data and
callbacks are built (which runs the layers' own checks of names and shapes), without a trainer,
a run folder or anything else written. A grid checks every point; a search checks the low and
high end of every range. The first refused point is named by the space key that causes it.
"""

import logging
import warnings
from contextlib import contextmanager
from typing import Any

import torch
from jsonargparse import ArgumentError
from optuna.distributions import CategoricalDistribution

from ..fit import WaveCLI, check_args
from ..run.configcheck import parser_reason
from ..run.noise import RANK_ZERO_LOGGERS
from .objective import point_args
from .spec import SEED_PARAM, Sweep, SweepFileError
from .storage import grid_points

# What a check would print of Lightning's: the seed line, the trainer's device lines
# ("GPU available: ..."), the cloud tips (rank_zero_info) and, where SLURM is installed, the
# hint to run under srun, once per checked point before a sweep's first trial
QUIET_LOGGERS = ("lightning.fabric.utilities.seed", *RANK_ZERO_LOGGERS)


@contextmanager
def quiet():
    """Nothing of Lightning's printed during a check: a check starts no run to report on."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            warnings.filterwarnings("ignore", message="The `srun` command is available")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


class Checker:
    """Checks fit arguments with one parser, built by the first check."""

    def __init__(self) -> None:
        self.cli: WaveCLI | None = None

    def check(self, args: list[str]) -> None:
        self.cli = check_args(args, self.cli)

    def refusal(self, args: list[str]) -> str | None:
        """Why `args` cannot run (one line), or None when they can."""
        threads = torch.get_num_threads()
        try:
            with quiet():
                self.check(args)
        except (ArgumentError, ValueError, TypeError, ImportError) as error:
            return parser_reason(str(error))
        finally:
            torch.set_num_threads(threads)  # the check applies --threads, not to this process
        return None


def fit_args(sweep: Sweep, params: dict[str, Any]) -> list[str]:
    """The fit arguments of the point `params` with the sweep's first seed."""
    return point_args(sweep, {**params, SEED_PARAM: sweep.seeds[0]})


def extremes(sweep: Sweep) -> list[dict[str, Any]]:
    """Points to check: every grid point (one seed), or the low and high ends of a search."""
    if sweep.is_grid:
        points = [{k: v for k, v in p.items() if k != SEED_PARAM} for p in grid_points(sweep)]
        return [dict(p) for p in {tuple(p.items()): p for p in points}.values()]
    ends = []
    for pick in (0, -1):
        ends.append({f.name: end(f.distribution, pick) for f in sweep.factors})
    return ends


def end(distribution: Any, pick: int) -> Any:
    """The first or last choice of a categorical, the low or high end of a range."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[pick]
    return distribution.low if pick == 0 else distribution.high


def blame(sweep: Sweep, checker: Checker, point: dict[str, Any], passed: dict[str, Any]) -> str:
    """The space key refused at `point`: the first one that, set back to its value at a point
    that passed, lets `point` pass; else the key that fit's reason names."""
    changed = [f.name for f in sweep.factors if passed and point[f.name] != passed[f.name]]
    for name in changed:
        if checker.refusal(fit_args(sweep, {**point, name: passed[name]})) is None:
            return f"space.{name}"
    return named_key(sweep, point, checker.refusal(fit_args(sweep, point)) or "")


def named_key(sweep: Sweep, point: dict[str, Any], reason: str) -> str:
    """The space key whose name or value fit's reason mentions; `args` when none does."""
    for factor in sweep.factors:
        if factor.name in reason or factor.name.rsplit(".", 1)[-1] in reason:
            return f"space.{factor.name}"
    for factor in sweep.factors:
        if repr(point[factor.name]) in reason or f'"{point[factor.name]}"' in reason:
            return f"space.{factor.name}"
    return "args"


def check_points(sweep: Sweep) -> None:
    """Raise SweepFileError naming the sweep file and space key of the first point that fit
    would refuse, with fit's reason (which says what is allowed)."""
    checker = Checker()
    passed: dict[str, Any] = {}
    for point in extremes(sweep):
        reason = checker.refusal(fit_args(sweep, point))
        if reason is not None:
            key = blame(sweep, checker, point, passed)
            values = ", ".join(f"{k}={v!r}" for k, v in point.items())
            file = sweep.source or sweep.path
            raise SweepFileError(f"{file}: {key}: fit refuses {values}: {reason}")
        passed = point
