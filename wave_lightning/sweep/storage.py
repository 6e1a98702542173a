"""Where a sweep lives: a journal file beside its runs, or any SQLAlchemy database for clusters.

The process that creates the study queues every grid point once; every worker agrees on the
sweep's fingerprint. Trials of dead workers are failed and queued again with the same run
directory: by Optuna's heartbeats on a database, by a process check on the journal.
"""

import copy
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
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from .factory import make_pruner, make_sampler
from .spec import Sweep

READY_TIMEOUT_S = 120.0
# of one attempt, never of its retry
ATTEMPT_ATTRS = ("worker", "fail_reason", "prune_reason", "resumed_from_step")


class StudyMismatchError(RuntimeError):
    """The stored study does not belong to this sweep file (or is not ready)."""


class RetryAttempt:
    """Optuna's RetryHeartbeatStaleTrialCallback on the trial without its attempt's attributes.

    The copy keeps params, run directory and reports, but not the dead attempt's `worker`: a
    retry that inherited it could be failed again by another worker right after its claim.
    """

    def __init__(self, max_retries: int) -> None:
        self.retry = RetryHeartbeatStaleTrialCallback(
            max_retry=max_retries, inherit_intermediate_values=True
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attempt = copy.deepcopy(trial)
        attempt.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}
        self.retry(study, attempt)


def retry_callback(sweep: Sweep) -> RetryAttempt:
    """Queues a killed trial again with the same run directory, at most sweep.max_retries times."""
    return RetryAttempt(sweep.max_retries)


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


def no_study(sweep: Sweep) -> StudyMismatchError:
    """The error for a sweep whose study was never started."""
    return StudyMismatchError(
        f"no study {sweep.study!r} in {storage_url(sweep)}; start it with `sweep run`"
    )


def load_study(sweep: Sweep, storage: BaseStorage) -> optuna.Study:
    """The sweep's existing study; a clear error when it was never started."""
    try:
        study = load_study_unchecked(sweep, storage)
    except KeyError as error:
        raise no_study(sweep) from error
    wait_ready(study, sweep)
    return study


def read_study(sweep: Sweep) -> optuna.Study:
    """The existing study for a command that only reads it (status, report, dashboard): a
    journal that does not exist is an error, not created empty with its folder."""
    if sweep.storage is None and not sweep.journal.is_file():
        raise no_study(sweep)
    return load_study(sweep, open_storage(sweep))


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
        sampler=study_sampler(sweep),
        pruner=make_pruner(sweep.pruner),
    )


def study_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    """The sampler of the loaded study; for a grid one that only takes the queued points.

    Grid points are queued trials with fixed parameters and nothing ever samples a grid; Optuna's
    GridSampler.after_trial, called by study.tell, would stop the study outside optimize
    (RuntimeError) or, with one point left, look up a `grid_id` queued trials lack (KeyError).
    """
    if sweep.is_grid:
        return optuna.samplers.RandomSampler()
    return make_sampler(sweep.sampler, sweep.space)


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
    """Atomically take a queued trial (a grid point or a retry) for this process; None when none
    is left.

    Study.ask would create a fresh trial when another worker took the last queued one, which
    runs a grid point twice; this claims through the storage and never creates one. The first
    heartbeat and the worker record follow at once (see `claim_orphans` for a death between).
    """
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = claim(study, frozen._trial_id)
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
    heartbeat grace.
    """
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
