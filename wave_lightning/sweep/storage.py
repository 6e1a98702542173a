"""Where a sweep lives: a journal file beside its runs, or any SQLAlchemy database for clusters.

Opening the storage and loading the study: the process that creates the study queues every grid
point once, and every process that loads it checks the sweep's fingerprint. RetryAttempt queues
a dead worker's trial again with the same run directory: Optuna's heartbeats call it on a
database, claims.py when it fails such a trial itself. Who runs which trial is claims.py's.
"""

import copy
import time
from collections.abc import Callable
from itertools import product

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from ..run.errors import UserError
from .factory import make_pruner, make_sampler
from .outage import Outage, PatientStorage
from .spec import Sweep, shown_url

READY_TIMEOUT_S = 120.0
# of one attempt, never of its retry
ATTEMPT_ATTRS = ("worker", "fail_reason", "prune_reason", "resumed_from_step")


class StudyMismatchError(UserError, RuntimeError):
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


def say(message: str) -> None:
    """A storage line of a process that has no log of its own."""
    print(message, flush=True)


def open_storage(
    sweep: Sweep, log: Callable[[str], None] = say, first_call_waits: bool = True
) -> PatientStorage:
    """The sweep's storage, its SQLAlchemy URL with heartbeats or the journal beside its runs,
    riding out outages of up to sweep.outage_limit seconds (see outage.py).

    `first_call_waits` False (commands a person watches: run, status, report): a storage that
    cannot be reached at all is an error at once. Workers and trials wait from their first call.
    """
    name = shown_url(sweep.storage) if sweep.storage else str(sweep.journal)
    outage = Outage(name, sweep.outage_limit, log, reached=first_call_waits)
    return PatientStorage(outage.call(storage_of, sweep), outage)


def storage_of(sweep: Sweep) -> JournalStorage | RDBStorage:
    """Optuna's storage of the sweep; pre-ping replaces the pool's connections a restart cut."""
    if sweep.storage is None:
        sweep.root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(sweep.journal)))
    return RDBStorage(
        sweep.storage,
        engine_kwargs={"pool_pre_ping": True},
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


def load_study(sweep: Sweep, storage: PatientStorage) -> optuna.Study:
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
    return load_study(sweep, open_storage(sweep, first_call_waits=False))


def open_study(sweep: Sweep, storage: PatientStorage) -> optuna.Study:
    """Create the study and queue its grid, or load it when another process created it."""
    try:
        optuna.create_study(
            study_name=sweep.study,
            storage=storage,
            directions=[o.direction for o in sweep.objectives],
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


def load_study_unchecked(sweep: Sweep, storage: PatientStorage) -> optuna.Study:
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
