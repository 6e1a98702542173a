"""Where a sweep lives: a journal file beside its runs, or any SQLAlchemy database for clusters.

The process that creates the study queues every grid point once; every worker agrees on the
sweep's fingerprint. Trials of dead workers are failed and queued again with the same run
directory: by Optuna's heartbeats on a database, by a process check on the journal.
"""

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from itertools import product
from pathlib import Path

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from .factory import make_pruner, make_sampler
from .spec import Sweep

READY_TIMEOUT_S = 120.0


class StudyMismatchError(RuntimeError):
    """The stored study does not belong to this sweep file (or is not ready)."""


def retry_callback(sweep: Sweep) -> RetryHeartbeatStaleTrialCallback:
    """Queues a dead worker's trial again; the copy keeps params, run directory and reports."""
    return RetryHeartbeatStaleTrialCallback(
        max_retry=sweep.max_retries, inherit_intermediate_values=True
    )


def open_storage(sweep: Sweep) -> BaseStorage:
    """The sweep's storage: its SQLAlchemy URL with heartbeats, or the journal beside its runs."""
    if sweep.storage is None:
        sweep.root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(sweep.journal)))
    return RDBStorage(
        sweep.storage,
        heartbeat_interval=sweep.heartbeat["interval"],
        grace_period=sweep.heartbeat["grace"],
        heartbeat_stale_trial_callback=retry_callback(sweep),
    )


def storage_url(sweep: Sweep) -> str:
    """The storage as Optuna's command line takes it (`optuna trials --storage ...`)."""
    return sweep.storage or str(sweep.journal)


def load_study(sweep: Sweep, storage: BaseStorage) -> optuna.Study:
    """The sweep's existing study; a clear error when it was never started."""
    try:
        study = load_study_unchecked(sweep, storage)
    except KeyError as error:
        raise StudyMismatchError(
            f"no study {sweep.study!r} in {storage_url(sweep)}; start it with `sweep run`"
        ) from error
    wait_ready(study, sweep)
    return study


def open_study(sweep: Sweep, storage: BaseStorage) -> optuna.Study:
    """Create the study and queue its grid, or load it when another process created it."""
    try:
        optuna.create_study(
            study_name=sweep.study,
            storage=storage,
            direction=sweep.direction,
        )
    except DuplicatedStudyError:
        return load_study(sweep, storage)
    study = load_study_unchecked(sweep, storage)
    study.set_user_attr("sweep_fingerprint", sweep.fingerprint)
    study.set_user_attr("sweep_file", str(sweep.path))
    if sweep.is_grid:
        for params in grid_points(sweep):
            study.enqueue_trial(params)
    study.set_user_attr("sweep_ready", True)
    return study


def load_study_unchecked(sweep: Sweep, storage: BaseStorage) -> optuna.Study:
    return optuna.load_study(
        study_name=sweep.study,
        storage=storage,
        sampler=make_sampler(sweep.sampler, sweep.space),
        pruner=make_pruner(sweep.pruner),
    )


def wait_ready(study: optuna.Study, sweep: Sweep) -> None:
    """Wait until the creating process queued the grid; refuse a study of another sweep."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not study.user_attrs.get("sweep_ready"):
        if time.monotonic() > deadline:
            raise StudyMismatchError(
                f"study {sweep.study!r} exists but its grid was never queued (its creator died?); "
                f"delete it (optuna delete-study --study-name {sweep.study} --storage "
                f"{storage_url(sweep)}) and start again"
            )
        time.sleep(0.5)
    stored = study.user_attrs.get("sweep_fingerprint")
    if stored != sweep.fingerprint:
        raise StudyMismatchError(
            f"study {sweep.study!r} was created from a different sweep file "
            f"(fingerprint {stored}, this file {sweep.fingerprint}); give this sweep a new `study`"
        )


def grid_points(sweep: Sweep) -> list[dict]:
    """Every combination of the factors' choices and the seeds, in file order, seeds innermost."""
    space = sweep.space
    names = list(space)
    grid = product(*(space[n].choices for n in names))
    return [dict(zip(names, values, strict=True)) for values in grid]


def claim_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Atomically take a queued trial (a grid point or a retry); None when none is left.

    Study.ask would create a fresh trial when another worker took the last queued one, which
    runs a grid point twice; this claims through the storage and never creates one.
    """
    storage = study._storage
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


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
    so a trial whose recorded worker process on this host no longer runs is failed here.
    """
    if sweep.storage is not None:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)
        after = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        return sorted(t.number for t in after if t.number not in before)
    recovered = []
    with file_lock(sweep.root / "recover.lock"):
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker is None or worker_alive(worker):
                continue
            fail_dead(study, sweep, trial, f"worker {worker['host']}:{worker['pid']} is gone")
            recovered.append(trial.number)
    return recovered


def fail_dead(study: optuna.Study, sweep: Sweep, trial: FrozenTrial, reason: str) -> None:
    """Mark a dead worker's trial FAIL with the reason and queue its retry."""
    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
    storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    retry_callback(sweep)(study, storage.get_trial(trial._trial_id))


def origin(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry series (the trial itself when not a retry)."""
    return trial.system_attrs.get("failed_trial", trial.number)  # set by the retry callback
