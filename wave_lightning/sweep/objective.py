"""One trial = one `wave-lightning fit` run in its own directory, in a child process.

A child process isolates crashes (a segfault or an out-of-memory kill ends one trial, not the
worker) and returns all GPU memory when it exits. It dies with its worker (PR_SET_PDEATHSIG),
so a killed worker leaves no orphan training behind. The child reports the metric to the
trial through the storage (TrialReporter); the worker reads the result back from the storage.
"""

import csv
import ctypes
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from .reporter import PRUNED_FILE
from .spec import SEED_PARAM, Sweep

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOG_FILE = "trial.log"


class TrialFailed(RuntimeError):
    """The trial's run exited with an error, or never logged a finite metric."""


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """The trial's value of one parameter (fixed for a queued grid point)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, low, high, step=step, log=log)
    return trial.suggest_float(name, low, high, step=step, log=log)


def fit_command(sweep: Sweep, params: dict, run_dir: Path, trial_number: int) -> list[str]:
    """The `wave-lightning fit` command of a trial.

    Order, later winning: base configs, config-file factors, the sweep's args, searched values,
    the seed, the run directory, the reporting callback, and `--ckpt_path last` on a retry.
    """
    command = [sys.executable, "-m", "wave_lightning", "fit"]
    for config in sweep.configs:
        command += ["--config", str(config)]
    files = [f for f in sweep.factors if f.config_files]
    for factor in files:
        command += factor.fit_args(params[factor.name])
    command += sweep.args  # after the config factors, before the searched values
    for factor in sweep.factors:
        if not factor.config_files:
            command += factor.fit_args(params[factor.name])
    command += ["--seed_everything", str(params[SEED_PARAM])]
    command += ["--trainer.default_root_dir", str(run_dir)]
    command += ["--trainer.callbacks+=wave_lightning.sweep.reporter.TrialReporter"]
    command += [f"--trainer.callbacks.sweep={sweep.path}"]
    command += [f"--trainer.callbacks.trial_number={trial_number}"]
    if (run_dir / LAST_CHECKPOINT).is_file():
        command += ["--ckpt_path", "last"]
    return command


def checkpoint_step(path: Path) -> int | None:
    """The global step saved in a Lightning checkpoint, None when there is none."""
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def die_with_parent() -> None:
    """In the child: receive SIGKILL when the worker that started it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_child(command: list[str], log: Path, env: dict[str, str]) -> int:
    """Run the trial's command with its output appended to `log`; its exit status."""
    with open(log, "a") as out:
        out.write(f"$ {subprocess.list2cmdline(command)}\n")
        out.flush()
        preexec = die_with_parent if sys.platform.startswith("linux") else None
        return subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        ).returncode


def last_line(log: Path) -> str:
    """The last non-empty line of a log: for a Python crash, the exception and its message."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def best_value(values: dict[int, float], direction: str) -> float | None:
    """The best finite reported value (minimum or maximum); None when there is none."""
    finite = [v for v in values.values() if math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if direction == "minimize" else max(finite)


def test_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of every test/ metric in the run's metrics.csv."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return {}
    metrics = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            metrics |= {k: float(v) for k, v in row.items() if k.startswith("test/") and v}
    return metrics


def objective(trial: optuna.Trial, sweep: Sweep, env: dict[str, str]) -> float:
    """Train the trial's configuration (resuming its last checkpoint); the best metric value."""
    params = {name: suggest(trial, name, d) for name, d in sweep.space.items()}
    name = trial.user_attrs.get("run_dir") or f"trial-{trial.number:04d}"
    run_dir = sweep.root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PRUNED_FILE).unlink(missing_ok=True)
    trial.set_user_attr("run_dir", name)
    resumed = checkpoint_step(run_dir / LAST_CHECKPOINT)
    if resumed is not None:
        trial.set_user_attr("resumed_from_step", resumed)
    command = fit_command(sweep, params, run_dir, trial.number)
    trial.set_user_attr("command", subprocess.list2cmdline(command))
    code = run_child(command, run_dir / LOG_FILE, env)
    if (run_dir / PRUNED_FILE).is_file():
        raise optuna.TrialPruned(last_line(run_dir / LOG_FILE))
    if code != 0:
        raise TrialFailed(f"exit status {code}: {last_line(run_dir / LOG_FILE)}")
    for metric, value in test_metrics(run_dir).items():
        trial.set_user_attr(metric, value)
    frozen = trial.study._storage.get_trial(trial._trial_id)
    value = best_value(frozen.intermediate_values, sweep.direction)
    if value is None:
        raise TrialFailed(f"{sweep.metric} was never logged with a finite value")
    return value
