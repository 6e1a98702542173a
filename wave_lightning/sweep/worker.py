"""Sweep workers: each claims trials one at a time until none is left; `sweep run` starts N.

One worker trains one trial at a time on the one device it sees (CUDA_VISIBLE_DEVICES), so
trials never use DDP; parallelism is more workers, on this machine or on others sharing a
database storage. SIGTERM to a worker is passed on to its trial's run, which writes
preempted.ckpt and exits; the trial is queued again and the worker exits with PREEMPTED_EXIT.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from ..run.preemption import PREEMPTED_EXIT
from .claims import claim_waiting, frozen, origin, recover_dead_trials, retries
from .front import best_lines, values_text
from .objective import TrialInterrupted, objective, suggest
from .outage import StorageLost
from .spec import Sweep
from .storage import grid_points, open_storage, open_study, retry_callback
from .trial_callback import STOPPED_ATTR

POLL_S = 2.0
Log = Callable[[str], None]


def say(message: str) -> None:
    """A worker's progress line, tagged with its host and pid."""
    print(f"[sweep worker {socket.gethostname()}:{os.getpid()}] {message}", flush=True)


def started_trials(study: optuna.Study) -> int:
    """How many trials the search has started, a retried trial and its retries counting once."""
    return len({origin(t) for t in study.get_trials(deepcopy=False)})


def new_trial(study: optuna.Study, sweep: Sweep) -> optuna.Trial | None:
    """A fresh trial from the sampler for searches with trials left; grids never make one."""
    if sweep.is_grid or started_trials(study) >= sweep.trials:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeats outside Study.optimize
        return study.ask()


def is_finished(study: optuna.Study, sweep: Sweep) -> bool:
    """True when no trial waits or runs, and a search has started all its trials."""
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    idle = states[TrialState.WAITING] == 0 and states[TrialState.RUNNING] == 0
    return idle and (sweep.is_grid or started_trials(study) >= sweep.trials)


def child_env(threads: int | None) -> dict[str, str]:
    """The environment of a trial's run: this one, with `threads` intra-op threads if given."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class StopOnSigterm:
    """The worker's SIGTERM handler: pass the signal on to the running trial, then stop."""

    def __init__(self) -> None:
        self.requested, self.child = False, None
        signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def started(self, child: subprocess.Popen) -> None:
        """Called with each trial's run as it starts; a stop already asked for reaches it."""
        self.child = child
        if self.requested:
            child.send_signal(signal.SIGTERM)


def position(study: optuna.Study, sweep: Sweep, trial: optuna.Trial) -> str:
    """'n of N': the trial's point (a retry counts as its original) among the sweep's."""
    total = len(grid_points(sweep)) if sweep.is_grid else sweep.trials
    origins = sorted({origin(t) for t in study.get_trials(deepcopy=False)})
    return f"{origins.index(origin(frozen(trial))) + 1} of {total}"


def still_running(trial: optuna.Trial) -> bool:
    """False when another process failed (and retried) the trial while this one was silent."""
    return frozen(trial).state == TrialState.RUNNING


def run_trial(
    study: optuna.Study, trial: optuna.Trial, sweep: Sweep, env: dict, log: Log, started: Callable
) -> None:
    """Run one claimed trial under heartbeats and record how it ended (with the reason)."""
    params = " ".join(f"{n}={suggest(trial, n, d)}" for n, d in sweep.space.items())
    history = frozen(trial).system_attrs.get("retry_history")
    again = f", retry of trial {history[-1]}" if history else ""
    where = f"trial {trial.number} ({position(study, sweep, trial)}{again})"
    log(f"{where}: start {params}")
    state, value, reason, retry = TrialState.COMPLETE, None, None, False
    with get_heartbeat_thread(trial._trial_id, study._storage):
        try:
            value = objective(trial, sweep, env, started, log)
        except optuna.TrialPruned as pruned:
            state, reason = TrialState.PRUNED, str(pruned)
        except TrialInterrupted as interrupted:
            state, reason, retry = TrialState.FAIL, str(interrupted), True
        except StorageLost:
            raise  # the storage, not the trial: it stays RUNNING for a rerun to retry
        except Exception as error:
            state, reason = TrialState.FAIL, f"{type(error).__name__}: {error}"
    if not record(study, trial, sweep, state, value, reason, retry):
        log(f"{where}: was failed and retried while this worker was silent; left to its retry")
        return
    again = retries(study).get(trial.number)
    detail = values_text(sweep, frozen(trial)) if state == TrialState.COMPLETE else reason
    if retry:
        detail += f"; retried as trial {again}" if again is not None else "; no retries left"
    log(f"{where}: {state.name} {detail}")


def record(
    study: optuna.Study,
    trial: optuna.Trial,
    sweep: Sweep,
    state: TrialState,
    value: float | None,
    reason: str | None,
    retry: bool,
) -> bool:
    """Tell the storage how the trial ended and queue its retry; False when it was no longer
    this worker's (failed by another process after its heartbeats or pid check)."""
    try:
        if not still_running(trial):
            return False
        if reason is not None:
            trial.set_user_attr(
                "fail_reason" if state == TrialState.FAIL else "prune_reason", reason
            )
        study.tell(trial, value, state=state)
    except UpdateFinishedTrialError:
        return False
    if retry:
        retry_callback(sweep)(study, frozen(trial))
    return True


def work(sweep: Sweep, threads: int | None = None, log: Log = say) -> int:
    """Claim and run trials until the sweep has none left; the worker's exit status (0 when the
    sweep is done, PREEMPTED_EXIT after a SIGTERM, 1 when the sweep was stopped by an error)."""
    study = open_study(sweep, open_storage(sweep, log))
    env, ran, stop = child_env(threads), 0, StopOnSigterm()
    while True:
        if stop.requested:
            log(f"stopped by SIGTERM after {ran} trials; its trial is queued again")
            return PREEMPTED_EXIT
        if STOPPED_ATTR in study.user_attrs:
            log(f"the sweep is stopped: {study.user_attrs[STOPPED_ATTR]}")
            return 1
        for number in recover_dead_trials(study, sweep):
            log(f"trial {number}: its worker is gone; queued again to resume")
        trial = claim_waiting(study) or new_trial(study, sweep)
        if trial is not None:
            run_trial(study, trial, sweep, env, log, stop.started)
            ran += 1
        elif is_finished(study, sweep):
            log(f"nothing left to run; this worker ran {ran} trials")
            return 0
        else:
            time.sleep(POLL_S)  # others still run trials that may come back for a retry


def exit_text(code: int) -> str:
    """A process's exit status in words."""
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


def wait_all(processes: list[subprocess.Popen], log: Log) -> int:
    """Reap each worker as it exits (a dead one must not linger as a zombie whose pid looks
    alive); 0 when all exited 0, else the first failure's status (128 + signal for a kill)."""
    codes: dict[int, int] = {}
    while len(codes) < len(processes):
        for process in processes:
            code = process.poll() if process.pid not in codes else None
            if code is not None:
                codes[process.pid] = code
                if code != 0:
                    log(f"worker {process.pid} {exit_text(code)}")
        time.sleep(0.2)
    failed = [code for code in codes.values() if code != 0]
    return 0 if not failed else (failed[0] if failed[0] > 0 else 128 - failed[0])


def launch(sweep: Sweep, workers: int, gpus: list[str] | None, threads: int | None) -> int:
    """Start `workers` worker processes, each seeing one GPU of `gpus` or none; 0 when all ended
    well. SIGTERM is passed on to every worker."""
    if gpus is None and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    command = [sys.executable, "-m", "wave_lightning", "sweep", "worker", str(sweep.path)]
    if threads:
        command += ["--threads", str(threads)]
    processes = []
    for index in range(workers):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus[index] if gpus else "")
        processes.append(subprocess.Popen(command, env=env))

    def forward(signum: int, frame: Any) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        return wait_all(processes, say)
    except KeyboardInterrupt:  # Ctrl-C reached the workers too; let them leave their trials
        return wait_all(processes, say)


def summary_text(study: optuna.Study, sweep: Sweep) -> str:
    """The closing lines of `sweep run`: trials by state, the best trial and where to look next."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    lines = [f"sweep {sweep.study}: " + ", ".join(f"{s} {n}" for s, n in sorted(states.items()))]
    if any(t.state == TrialState.COMPLETE for t in trials):
        lines += best_lines(study, sweep)
    lines.append(f"report: wave-lightning sweep report {sweep.path}")
    return "\n".join(lines)
