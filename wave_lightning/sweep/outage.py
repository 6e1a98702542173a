"""A sweep storage that rides out an outage: a database that restarts, a journal file that a
network file system cannot open or lock for a while.

Every storage call of a worker, of `sweep run` and of a trial's reporting callback goes through
`PatientStorage`: a lost or refused connection (or an unreadable journal) is retried with
backoff for at most the sweep's `outage_limit` seconds, with one line when the storage goes
away and one when it is back. Longer than that, the call raises `StorageLost`, a one-line error.
Each process keeps one `Outage` record, so its liveness checks can wait until every worker had a
heartbeat's grace to beat again after the storage returned.
"""

import abc
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from ..run.errors import UserError

BACKOFF_S = (0.5, 5.0)  # first wait, longest wait between tries
RESULT = TypeVar("RESULT")


class StorageLost(UserError, RuntimeError):
    """The sweep's storage stayed away for longer than the sweep's outage_limit."""


class StorageAway(RuntimeError):
    """The storage is away and the caller asked not to wait (see `Outage.without_waiting`)."""


def outage_cause(error: BaseException | None) -> BaseException | None:
    """The error in `error`'s chain that says the storage cannot be reached (not that a call was
    wrong): a lost or refused database connection, or a journal file I/O error; else None."""
    while error is not None:
        if isinstance(error, (OperationalError, InterfaceError, DisconnectionError, OSError)):
            return error
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return error
        error = error.__cause__ if isinstance(error, StorageInternalError) else None
    return None


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the storage cannot be reached (see outage_cause)."""
    return outage_cause(error) is not None


def reason(error: BaseException) -> str:
    """The first line of what the driver or the file system said (Optuna's wrapper hides it)."""
    cause = outage_cause(error) or error
    lines = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class Outage:
    """One process's view of its storage's availability: retries calls while it is away."""

    def __init__(
        self, name: str, limit_s: float, log: Callable[[str], None], reached: bool = True
    ) -> None:
        """`reached` False: until a first call succeeds, a storage that cannot be reached is an
        error at once (a wrong URL or path is likelier than an outage)."""
        self.name, self.limit_s, self.log, self.reached = name, limit_s, log, reached
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.back_at: float | None = None
        self.waiting = threading.local()

    def call(self, function: Callable[..., RESULT], *args: Any, **kwargs: Any) -> RESULT:
        """`function(*args, **kwargs)`, tried again with backoff while the storage is away."""
        delay = BACKOFF_S[0]
        while True:
            try:
                result = function(*args, **kwargs)
            except Exception as error:
                if not (self.reached and is_outage(error)):
                    raise
                self.went_away(error)
                delay = self.wait(delay)
                continue
            self.came_back()
            return result

    def went_away(self, error: BaseException) -> None:
        """Note the first failed call of an outage, in one line."""
        with self.lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
                self.log(
                    f"storage {self.name} went away ({reason(error)}); "
                    f"retrying for up to {self.limit_s:g} s"
                )

    def wait(self, delay: float) -> float:
        """Sleep before the next try; StorageLost past the limit, StorageAway when asked not to
        wait. The next delay."""
        if not getattr(self.waiting, "on", True):
            raise StorageAway(f"storage {self.name} is away")
        away = time.monotonic() - (self.down_since or time.monotonic())
        if away > self.limit_s:
            raise StorageLost(
                f"storage {self.name} stayed unreachable for {away:.0f} s, longer than the "
                f"sweep's outage_limit ({self.limit_s:g} s); run the same command again once it "
                "is back"
            )
        time.sleep(delay)
        return min(2 * delay, BACKOFF_S[1])

    def came_back(self) -> None:
        """Note the first successful call after an outage, in one line."""
        self.reached = True
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is not None:
                away = time.monotonic() - self.down_since
                self.down_since, self.back_at = None, time.monotonic()
                self.log(f"storage {self.name} is back after {away:.0f} s")

    def settled(self, grace_s: float) -> bool:
        """False while the storage is away, and after its return until every live worker had a
        heartbeat's grace to beat again (counted from its next try, at most BACKOFF_S[1] later):
        liveness checks wait, as heartbeats could not reach the storage meanwhile."""
        if self.down_since is not None:
            return False
        since = time.monotonic() - (self.back_at or -math.inf)
        return since >= grace_s + BACKOFF_S[1]

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Within: a call that finds the storage away raises StorageAway at once (this thread)."""
        self.waiting.on = False
        try:
            yield
        finally:
            self.waiting.on = True


def forwarded(name: str) -> Callable[..., Any]:
    """A PatientStorage method that calls the wrapped storage's `name` through the outage."""

    def method(self: "PatientStorage", *args: Any, **kwargs: Any) -> Any:
        return self.outage.call(getattr(self.storage, name), *args, **kwargs)

    method.__name__ = name
    return method


def storage_methods() -> set[str]:
    """Every method of Optuna's storage and heartbeat interfaces that touches the storage."""
    names = {
        name
        for interface in (BaseStorage, BaseHeartbeat)
        for name, value in vars(interface).items()
        if callable(value) and (not name.startswith("_") or name == "_get_stale_trial_ids")
    }
    return names - {"get_heartbeat_interval", "record_heartbeat"}


class PatientStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage (RDB or journal) whose every call rides out an outage (see `Outage`).

    Heartbeats are enabled exactly when the wrapped storage has them.
    """

    def __init__(self, storage: BaseStorage, outage: Outage) -> None:
        self.storage, self.outage = storage, outage

    def get_heartbeat_interval(self) -> int | None:
        """The wrapped storage's heartbeat interval; None (no heartbeats) for a journal."""
        if isinstance(self.storage, BaseHeartbeat):
            return self.storage.get_heartbeat_interval()
        return None

    def record_heartbeat(self, trial_id: int) -> None:
        """A heartbeat; one the limit lost is skipped (the worker's own next call reports it),
        so Optuna's heartbeat thread never dies with a traceback."""
        with suppress(StorageLost):
            self.outage.call(self.storage.record_heartbeat, trial_id)


for _name in storage_methods():
    setattr(PatientStorage, _name, forwarded(_name))
abc.update_abstractmethods(PatientStorage)
