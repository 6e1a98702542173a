"""Who runs which trial: claims, worker liveness, dead workers' trials and run-folder leases.

A worker claims a queued trial through the storage and records itself on it (host, pid and the
pid's start time). Trials of dead workers are failed and queued again with the same run
directory: by Optuna's heartbeats on a database, by a process check on the journal. While a
trial's run lives, its worker holds a lock on the run folder, so a retry never writes into it
beside a woken old attempt.
"""

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from .spec import Sweep
from .storage import retry_callback

LEASE_FILE = "owner.lock"
OWNER_FILE = "owner.json"


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """The live trial's current state from the storage; Optuna has no public way to read it."""
    return trial.study._storage.get_trial(trial._trial_id)


def claim_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Atomically take a queued trial (a grid point or a retry) for this process; None when none
    is left.

    Study.ask would create a fresh trial when another worker took the last queued one, which
    runs a grid point twice; this claims through the storage and never creates one. The first
    heartbeat and the worker record follow at once (see `claim_orphans` for a death between).
    """
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = claim(study, waiting._trial_id)
        if trial is not None:
            return trial
    return None


def claim(study: optuna.Study, trial_id: int) -> optuna.Trial | None:
    """WAITING -> RUNNING for this process, a first heartbeat and its worker record; None when
    another process won the trial."""
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
            return None
    except UpdateFinishedTrialError:
        return None
    if is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id)  # fail_stale_trials sees only trials with one
    storage.set_trial_user_attr(trial_id, "worker", worker_identity())
    return optuna.Trial(study, trial_id)


def worker_identity() -> dict:
    """This process as recorded on its trials: host, pid and the pid's start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}


def process_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_alive(worker: dict) -> bool:
    """Whether the worker recorded on a trial still runs (only decidable on its own host)."""
    if worker.get("host") != socket.gethostname():
        return True
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_start(worker["pid"]) == worker.get("start")


@contextmanager
def file_lock(path: Path):
    """An exclusive lock on `path`, so that one process at a time recovers dead trials."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover_dead_trials(study: optuna.Study, sweep: Sweep) -> list[int]:
    """Fail and queue again the running trials whose worker is gone; their numbers.

    Databases use Optuna's heartbeats (optuna.storages.fail_stale_trials); the journal has none,
    so a trial whose recorded worker process on this host no longer runs is failed here. On
    both, a trial claimed by a worker that died before recording itself is failed after the
    heartbeat grace. Nothing is failed while the storage is away or within a grace of its
    return: live workers' heartbeats could not reach it meanwhile.
    """
    if not study._storage.outage.settled(sweep.heartbeat["grace"]):
        return []
    if sweep.storage is not None:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)
        after = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        stale = [t.number for t in after if t.number not in before]
        return sorted(stale + claim_orphans(study, sweep))
    with file_lock(sweep.root / "recover.lock"):
        recovered = claim_orphans(study, sweep)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker is None or worker_alive(worker):
                continue
            reason = f"its worker {worker['host']}:{worker['pid']} is gone"
            if fail_dead(study, sweep, trial, reason):
                recovered.append(trial.number)
    return sorted(recovered)


def claim_orphans(study: optuna.Study, sweep: Sweep) -> list[int]:
    """Fail and queue again the trials RUNNING for longer than the grace without a worker record
    (their worker died between the claim and `claim`'s next write); their numbers."""
    grace, now, orphans = sweep.heartbeat["grace"], time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if "worker" in trial.user_attrs or now - started < grace:
            continue
        if fail_dead(study, sweep, trial, "its worker died while claiming it"):
            orphans.append(trial.number)
    return orphans


def fail_dead(study: optuna.Study, sweep: Sweep, trial: FrozenTrial, reason: str) -> bool:
    """Mark a dead worker's trial FAIL with the reason and queue its retry; False when another
    process did first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    retry_callback(sweep)(study, storage.get_trial(trial._trial_id))
    return True


def retries(study: optuna.Study) -> dict[int, int]:
    """{failed trial number: the number of the trial that retries it}."""
    return {
        t.system_attrs["retry_history"][-1]: t.number
        for t in study.get_trials(deepcopy=False)
        if t.system_attrs.get("retry_history")
    }


def origin(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry series (the trial itself when not a retry)."""
    return trial.system_attrs.get("failed_trial", trial.number)  # set by the retry callback


@contextmanager
def run_folder_lease(run_dir: Path, trial_number: int, log: Callable[[str], None]) -> Iterator:
    """Hold the run folder: an exclusive lock (waiting for an older attempt still holding it)
    and owner.json naming the trial and this worker."""
    with open(run_dir / LEASE_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"trial {trial_number}: waiting for {owner_text(run_dir)} to leave {run_dir.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        (run_dir / OWNER_FILE).write_text(json.dumps({"trial": trial_number, **worker_identity()}))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def owner_text(run_dir: Path) -> str:
    """Who holds a run folder, from its owner.json."""
    try:
        owner = json.loads((run_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return "an earlier attempt"
    return f"trial {owner['trial']} (worker {owner['host']}:{owner['pid']})"
