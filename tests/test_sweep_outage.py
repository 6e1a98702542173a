"""A storage that goes away and comes back: retries with backoff, one line each way, a bounded
wait that ends in one error line, and no liveness verdict until the workers could beat again.

The real outages (a PostgreSQL server stopped during a running sweep) are in
test_sweep_faults.py; these tests cause the same errors in single calls.
"""

import threading
import time

import optuna
import pytest
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.sweeps import write_sweep
from wave_lightning.sweep import outage
from wave_lightning.sweep.outage import (
    Outage,
    PatientStorage,
    StorageAway,
    StorageLost,
    is_outage,
    reason,
)
from wave_lightning.sweep.spec import SweepFileError, load_sweep
from wave_lightning.sweep.storage import open_storage

REFUSED = OperationalError("SELECT 1", {}, Exception("connection refused"))


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Tries 10 ms apart (at most 50 ms), so that the tests take fractions of a second."""
    monkeypatch.setattr(outage, "BACKOFF_S", (0.01, 0.05))


class Flaky:
    """A storage call that fails with `error` its first `failures` times, then returns 42."""

    def __init__(self, failures: int, error: Exception = REFUSED) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def watched(limit_s: float = 5.0, reached: bool = True) -> tuple[Outage, list[str]]:
    lines: list[str] = []
    return Outage("db", limit_s, lines.append, reached=reached), lines


def test_a_refused_connection_is_retried_until_the_storage_is_back():
    record, lines = watched()
    flaky = Flaky(3)
    assert record.call(flaky) == 42
    assert flaky.calls == 4
    assert len(lines) == 2
    assert lines[0] == "storage db went away (connection refused); retrying for up to 5 s"
    assert lines[1].startswith("storage db is back after ")


def test_optunas_wrapped_connection_error_counts_as_an_outage():
    wrapped = StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = REFUSED
    assert is_outage(wrapped)
    assert reason(wrapped) == "connection refused"  # the driver's words, not Optuna's wrapper
    assert not is_outage(StorageInternalError("no cause"))
    assert is_outage(FileNotFoundError("journal"))  # a journal file a network FS lost


def test_an_error_of_the_call_itself_is_raised_at_once_without_a_line():
    record, lines = watched()
    integrity = IntegrityError("INSERT", {}, Exception("duplicate key"))
    for error in (integrity, ValueError("bad value")):
        flaky = Flaky(1, error)
        with pytest.raises(type(error)):
            record.call(flaky)
        assert flaky.calls == 1
    assert lines == []


def test_an_outage_longer_than_the_limit_is_one_error_naming_storage_and_limit():
    record, lines = watched(limit_s=0.1)
    start = time.monotonic()
    with pytest.raises(StorageLost) as lost:
        record.call(Flaky(10**6))
    assert 0.1 <= time.monotonic() - start < 2.0
    message = str(lost.value)
    assert message.startswith("storage db stayed unreachable for 0 s")
    assert "longer than the sweep's outage_limit (0.1 s)" in message
    assert len(lines) == 1 and "went away" in lines[0]


def test_a_storage_never_reached_is_an_error_at_once():
    record, lines = watched(reached=False)
    flaky = Flaky(1)
    with pytest.raises(OperationalError):
        record.call(flaky)
    assert (flaky.calls, lines) == (1, [])
    assert record.call(Flaky(0)) == 42  # once reached, an outage is waited for
    assert record.call(Flaky(2)) == 42


def test_a_caller_that_cannot_wait_is_told_at_once():
    record, lines = watched()
    with record.without_waiting(), pytest.raises(StorageAway):
        record.call(Flaky(1))
    assert len(lines) == 1  # the outage began: one line
    assert record.call(Flaky(0)) == 42  # waiting again outside the block; the storage is back
    assert lines[1].startswith("storage db is back")


def test_liveness_waits_a_grace_and_the_longest_backoff_after_the_return(monkeypatch):
    record, _ = watched()
    assert record.settled(grace_s=0.05)  # never away
    clock = [100.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: clock[0])
    record.went_away(REFUSED)
    assert not record.settled(grace_s=0.05)
    record.came_back()
    clock[0] += 0.09  # grace 0.05 + longest backoff 0.05 not yet over
    assert not record.settled(grace_s=0.05)
    clock[0] += 0.02
    assert record.settled(grace_s=0.05)


def test_heartbeats_are_enabled_exactly_when_the_wrapped_storage_has_them(tmp_path):
    record, _ = watched()
    with_beats = RDBStorage(f"sqlite:///{tmp_path}/a.db", heartbeat_interval=1, grace_period=2)
    without = RDBStorage(f"sqlite:///{tmp_path}/b.db")
    assert is_heartbeat_enabled(PatientStorage(with_beats, record))
    assert not is_heartbeat_enabled(PatientStorage(without, record))


def test_a_lost_heartbeat_past_the_limit_is_skipped_not_raised():
    record, _ = watched(limit_s=0.05)

    class Gone:
        def record_heartbeat(self, trial_id: int) -> None:
            raise REFUSED

    PatientStorage(Gone(), record).record_heartbeat(0)  # Optuna's thread must not die


def test_a_journal_that_vanishes_for_a_while_is_waited_for(tmp_path):
    path = write_sweep(tmp_path, {"optimizer.init_args.lr": {"choices": [0.01]}}, [0], [])
    sweep = load_sweep(path)
    lines: list[str] = []
    storage = open_storage(sweep, lines.append)
    study = optuna.create_study(study_name=sweep.study, storage=storage)
    study.set_user_attr("before", 1)
    away = sweep.root.with_name("away")
    sweep.root.rename(away)  # the network file system lost the folder
    threading.Timer(0.3, away.rename, [sweep.root]).start()
    study.set_user_attr("during", 2)  # written once the folder is back
    assert study.user_attrs == {"before": 1, "during": 2}
    assert lines[0].startswith(f"storage {sweep.journal} went away")
    assert lines[1].startswith(f"storage {sweep.journal} is back after ")


@pytest.mark.parametrize("value", [0, -5, "ten"])
def test_outage_limit_must_be_a_positive_number_of_seconds(tmp_path, value):
    path = write_sweep(tmp_path, {"optimizer.init_args.lr": {"choices": [0.01]}}, [0], [])
    path.write_text(path.read_text() + f"outage_limit: {value}\n")
    with pytest.raises(SweepFileError, match="outage_limit"):
        load_sweep(path)


def test_outage_limit_defaults_to_ten_minutes(tmp_path):
    path = write_sweep(tmp_path, {"optimizer.init_args.lr": {"choices": [0.01]}}, [0], [])
    assert load_sweep(path).outage_limit == 600
