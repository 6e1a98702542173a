"""One trial = one `wave-lightning fit` run in its own directory, in a child process.

A child process isolates crashes (a segfault or an out-of-memory kill ends one trial, not the
worker) and returns all GPU memory when it exits. It dies with its worker (PR_SET_PDEATHSIG),
so a killed worker leaves no orphan training behind. The child reports the metric to the
trial through the storage (TrialReporter); the worker reads the result back from the storage.

How the run ended decides the trial: COMPLETE only with completed.json (fit reached its end);
killed by a signal or preempted (PREEMPTED_EXIT) is the infrastructure's doing: TrialInterrupted,
retried; any other exit is an error of the run: TrialFailed. The worker holds the run folder's
lease (claims.run_folder_lease) while its run lives, so a retry never writes into it beside a
woken old attempt.
"""

import csv
import ctypes
import json
import math
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from ..run.checkpoints import CheckpointError, load_checkpoint
from ..run.folder import RunFolder
from ..run.preemption import PREEMPTED_EXIT
from ..run.trial import trial_environment
from .claims import frozen, run_folder_lease
from .spec import MEASURED, SEED_PARAM, Sweep
from .trial_callback import COMPLETED_FILE, PRUNED_FILE

LOG_FILE = "trial.log"
COMMAND_FILE = "command.txt"
Started = Callable[[subprocess.Popen], None]


class TrialFailed(RuntimeError):
    """The trial's run exited with an error, or never logged a finite metric."""


class TrialInterrupted(RuntimeError):
    """The trial's run was killed by a signal or preempted: retry it from its checkpoint."""


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """The trial's value of one parameter (fixed for a queued grid point)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, low, high, step=step, log=log)
    return trial.suggest_float(name, low, high, step=step, log=log)


def trial_args(sweep: Sweep, params: dict) -> list[str]:
    """What makes this trial differ from the others: its searched values and its seed."""
    args = []
    for factor in sweep.factors:
        if not factor.config_files:
            args += factor.fit_args(params[factor.name])
    return [*args, "--seed_everything", str(params[SEED_PARAM])]


def point_args(sweep: Sweep, params: dict) -> list[str]:
    """The `wave-lightning fit` arguments of the point `params`, wherever it runs.

    Order, later winning: base configs, config-file factors, the sweep's args, searched values
    and the seed.
    """
    args = []
    for config in sweep.configs:
        args += ["--config", str(config)]
    for factor in sweep.factors:
        if factor.config_files:
            args += factor.fit_args(params[factor.name])
    args += sweep.args  # after the config factors, before the searched values
    return args + trial_args(sweep, params)


def fit_command(
    sweep: Sweep, params: dict, run_dir: Path, trial_number: int, resume: bool = False
) -> list[str]:
    """The `wave-lightning fit` command of a trial: the point's arguments, then the run
    directory, the reporting callback, and `--ckpt_path last` on a resume."""
    command = [sys.executable, "-m", "wave_lightning", "fit", *point_args(sweep, params)]
    command += ["--trainer.default_root_dir", str(run_dir)]
    command += ["--trainer.callbacks+=wave_lightning.sweep.trial_callback.TrialReporter"]
    command += [f"--trainer.callbacks.sweep={sweep.path}"]
    command += [f"--trainer.callbacks.trial_number={trial_number}"]
    if resume:
        command += ["--ckpt_path", "last"]
    return command


def checkpoint_step(path: str | Path | None) -> int | None:
    """The global step saved in a Lightning checkpoint, None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    return int(load_checkpoint(path)["global_step"])


def trim_metrics(run_dir: Path, step: int) -> int:
    """Drop the metrics.csv rows of steps >= `step`, which a resume from `step` logs again (a
    killed attempt logged them after its checkpoint); the number of rows dropped."""
    path = RunFolder(run_dir).metrics
    if not path.is_file():
        return 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
    if len(kept) < len(rows):
        with open(path.with_suffix(".tmp"), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(path.with_suffix(".tmp"), path)
    return len(rows) - len(kept)


def set_aside(run_dir: Path, log: Callable[[str], None]) -> None:
    """Rename what an attempt left without a readable checkpoint (metrics.csv, damaged
    checkpoints) to NAME.old, so that the new attempt starts in a fresh folder and no file of
    the old one is deleted."""
    for name in RunFolder(run_dir).previous_run():
        path = run_dir / name
        path.replace(path.with_name(path.name + ".old"))
        log(f"{run_dir.name}: no readable checkpoint; set {name} aside as {name}.old")


def die_with_parent() -> None:
    """In the child: receive SIGKILL when the worker that started it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_child(command: list[str], log: Path, env: dict[str, str], started: Started) -> int:
    """Run the trial's command with its output appended to `log`; its exit status. `started`
    gets the process (the worker passes its SIGTERM on to it)."""
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        preexec = die_with_parent if sys.platform.startswith("linux") else None
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        )
        started(process)
        return process.wait()


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


def best_row(run_dir: Path, metric: str, direction: str) -> dict[str, float]:
    """The validation row of metrics.csv where `metric` is best: every metric logged with it."""
    rows = [r for r in RunFolder(run_dir).metric_rows() if r.get(metric)]
    rows = [r for r in rows if math.isfinite(float(r[metric]))]
    if not rows:
        return {}
    pick = min if direction == "minimize" else max
    row = pick(rows, key=lambda r: float(r[metric]))
    return {k: float(v) for k, v in row.items() if v and k != "epoch"}


def trial_values(
    trial: optuna.Trial, sweep: Sweep, run_dir: Path, leading: float | None
) -> dict[str, float]:
    """Every objective and constrained quantity of a finished trial: the leading metric's best
    reported value, the other logged metrics at the validation where it was best (a
    multi-objective trial reports nothing: all come from metrics.csv), and the measured ones."""
    record = json.loads((run_dir / COMPLETED_FILE).read_text())
    measured = {k: record[k] for k in MEASURED if record.get(k) is not None}
    for name, value in measured.items():
        trial.set_user_attr(name, value)
    values = measured | best_row(run_dir, sweep.metric, sweep.direction)
    if leading is not None:
        values[sweep.metric] = leading
    wanted = [o.name for o in sweep.objectives] + [c.name for c in sweep.constraints]
    for name in wanted:
        if name not in values:
            why = "no training step was timed" if name == "step_seconds" else "never logged"
            raise TrialFailed(f"{name} has no finite value ({why})")
    return values


def test_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of every test/ metric in the run's metrics.csv."""
    metrics = {}
    for row in RunFolder(run_dir).metric_rows():
        metrics |= {k: float(v) for k, v in row.items() if k.startswith("test/") and v}
    return metrics


def prepare(
    trial: optuna.Trial, sweep: Sweep, run_dir: Path, params: dict, log: Callable[[str], None]
) -> list[str]:
    """Under the lease: clear the last attempt's records, pick the newest readable checkpoint,
    drop the metrics rows logged after it, record and write the command; the command."""
    for name in (PRUNED_FILE, COMPLETED_FILE):
        (run_dir / name).unlink(missing_ok=True)
    checkpoint = RunFolder(run_dir).newest_checkpoint()
    step = checkpoint_step(checkpoint)
    if step is not None:
        trial.set_user_attr("resumed_from_step", step)
        log(f"trial {trial.number}: resumes from step {step} ({Path(checkpoint).name})")
    if checkpoint is None:  # a start from scratch: fit refuses a folder that holds a run
        set_aside(run_dir, log)
    else:
        trim_metrics(run_dir, step)
    command = fit_command(sweep, params, run_dir, trial.number, resume=checkpoint is not None)
    (run_dir / COMMAND_FILE).write_text(shlex.join(command) + "\n")
    short = shlex.join(trial_args(sweep, params))
    trial.set_user_attr("command", f"{short} (all of it: {run_dir.name}/{COMMAND_FILE})")
    return command


def exit_reason(code: int, run_dir: Path) -> str:
    """What ended a run that did not reach its end, in words."""
    if code == PREEMPTED_EXIT:
        folder = RunFolder(run_dir)
        try:
            step = checkpoint_step(folder.preempted)
        except CheckpointError:  # cut short: the retry resumes from an older one
            step = None
        saved = folder.preempted.relative_to(folder.path)
        where = f"at step {step} with {saved}" if step is not None else "early"
        return f"preempted (SIGTERM): stopped {where}"
    if code < 0:
        name = signal.Signals(-code).name
        killer = " (the out-of-memory killer or kill -9)" if code == -signal.SIGKILL else ""
        return f"killed by {name}{killer}"
    if code == 0:
        return "exited 0 before its fit reached its end (no completed.json)"
    return f"exit status {code}: {last_line(run_dir / LOG_FILE)}"


def objective(
    trial: optuna.Trial, sweep: Sweep, env: dict[str, str], started: Started, log: Callable
) -> float | list[float]:
    """Train the trial's configuration (resuming its newest checkpoint); the best metric value,
    or every objective's value in a multi-objective sweep. Constraints are set on the trial."""
    params = {name: suggest(trial, name, d) for name, d in sweep.space.items()}
    name = trial.user_attrs.get("run_dir") or f"trial-{trial.number:04d}"
    run_dir = sweep.root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("run_dir", name)
    with run_folder_lease(run_dir, trial.number, log):
        command = prepare(trial, sweep, run_dir, params, log)
        trial_env = env | trial_environment(sweep.study, trial.number, params)
        code = run_child(command, run_dir / LOG_FILE, trial_env, started)
    if (run_dir / PRUNED_FILE).is_file():
        raise optuna.TrialPruned(last_line(run_dir / LOG_FILE))
    if code == PREEMPTED_EXIT or code < 0:
        raise TrialInterrupted(exit_reason(code, run_dir))
    if code != 0 or not (run_dir / COMPLETED_FILE).is_file():
        raise TrialFailed(exit_reason(code, run_dir))
    for metric, value in test_metrics(run_dir).items():
        trial.set_user_attr(metric, value)
    leading = None
    if not sweep.is_multi:
        leading = best_value(frozen(trial).intermediate_values, sweep.direction)
        if leading is None:
            raise TrialFailed(f"{sweep.metric} was never logged with a finite value")
    values = trial_values(trial, sweep, run_dir, leading)
    for constraint in sweep.constraints:
        trial.set_constraint(constraint.key, constraint.violation(values[constraint.name]))
    if not sweep.is_multi:
        return leading
    return [values[o.name] for o in sweep.objectives]
