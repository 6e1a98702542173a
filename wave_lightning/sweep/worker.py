"""Sweep workers: each claims trials one at a time until none is left; `sweep run` starts N.

One worker trains one trial at a time on the one device it sees (CUDA_VISIBLE_DEVICES), so
trials never use DDP; parallelism is more workers, on this machine or on others sharing a
database storage.
"""

import os
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from .objective import objective
from .spec import Sweep
from .storage import (
    claim_waiting,
    open_storage,
    open_study,
    origin,
    recover_dead_trials,
    worker_identity,
)

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


def run_trial(study: optuna.Study, trial: optuna.Trial, sweep: Sweep, env: dict, log: Log) -> None:
    """Run one claimed trial under heartbeats and record how it ended (with the reason)."""
    trial.set_user_attr("worker", worker_identity())
    if "fail_reason" in trial.user_attrs:  # inherited from the attempt this one retries
        trial.set_user_attr("fail_reason", None)
    log(f"trial {trial.number}: start {trial.user_attrs.get('run_dir') or ''}")
    state, value = TrialState.COMPLETE, None
    with get_heartbeat_thread(trial._trial_id, study._storage):
        try:
            value = objective(trial, sweep, env)
        except optuna.TrialPruned as pruned:
            state = TrialState.PRUNED
            trial.set_user_attr("prune_reason", str(pruned))
        except Exception as error:
            state = TrialState.FAIL
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}")
    # skip_if_finished: a trial silent past the grace period was already failed and retried
    study.tell(trial, value, state=state, skip_if_finished=True)
    detail = (
        f"{sweep.metric}={value:.6g}"
        if value is not None
        else trial.user_attrs.get("fail_reason" if state == TrialState.FAIL else "prune_reason")
    )
    log(f"trial {trial.number}: {state.name} {detail}")


def work(sweep: Sweep, threads: int | None = None, log: Log = say) -> int:
    """Claim and run trials until the sweep has none left; the number this worker ran."""
    study = open_study(sweep, open_storage(sweep))
    env, ran = child_env(threads), 0
    while True:
        for number in recover_dead_trials(study, sweep):
            log(f"trial {number}: its worker is gone; queued again to resume")
        trial = claim_waiting(study) or new_trial(study, sweep)
        if trial is not None:
            run_trial(study, trial, sweep, env, log)
            ran += 1
        elif is_finished(study, sweep):
            log(f"nothing left to run; this worker ran {ran} trials")
            return ran
        else:
            time.sleep(POLL_S)  # others still run trials that may come back for a retry


def launch(sweep: Sweep, workers: int, gpus: list[str] | None, threads: int | None) -> int:
    """Start `workers` worker processes, each seeing one GPU of `gpus` or none; the worst exit."""
    if gpus is None and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    command = [sys.executable, "-m", "wave_lightning", "sweep", "worker", str(sweep.path)]
    if threads:
        command += ["--threads", str(threads)]
    processes = []
    for index in range(workers):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus[index] if gpus else "")
        processes.append(subprocess.Popen(command, env=env))
    try:
        return max(process.wait() for process in processes)
    except KeyboardInterrupt:  # Ctrl-C reached the workers too; let them leave their trials
        return max(process.wait() for process in processes)
