"""Sweeps under the faults a cluster causes: killed, preempted, frozen workers and trials, deaths
in the claim window, a one-point grid, a metric no validation logs, a damaged checkpoint.

The slow tests run real workers; a trial's first attempt holds after global step HOLD_STEP (test
callback HoldOnce) so that the test sends its real signal to the real process at a known point:
last.ckpt then holds step 10 (2 steps per epoch), a preemption checkpoints step 11. After every
fault: every grid point COMPLETE exactly once, the retry resumed from the expected step,
metrics.csv logs every step once and in order, and `sweep status` says what happened.
"""

import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
from lightning.pytorch import Callback, Trainer
from optuna.trial import TrialState

from tests.helpers import ROOT
from tests.sweeps import dead_pid, points_of, postgres_url, wait_for, write_sweep
from wave_lightning.run.folder import RunFolder
from wave_lightning.run.signals import Signals
from wave_lightning.sweep.claims import claim_waiting, recover_dead_trials, worker_identity
from wave_lightning.sweep.objective import LOG_FILE, prepare
from wave_lightning.sweep.report import status_text
from wave_lightning.sweep.spec import load_sweep, shown_url
from wave_lightning.sweep.storage import open_storage, open_study
from wave_lightning.sweep.worker import position

MAX_STEPS = 24
HOLD_STEP = 11
HOLD_FILE = "hold.json"
RELEASE_FILE = "release"
KILLED = "killed by SIGKILL (the out-of-memory killer or kill -9)"


class HoldOnce(Callback):
    """Test fault point: after global step `step` of a run's first attempt (seed in `seeds`),
    write hold.json with this process's pid, then wait until a stop signal or the file `release`."""

    def __init__(self, step: int, seeds: list[int]) -> None:
        self.step, self.seeds = step, seeds

    def on_train_batch_end(self, trainer: Trainer, *args) -> None:
        root = Path(trainer.default_root_dir)
        seed = int(os.environ["PL_GLOBAL_SEED"])
        if (
            trainer.global_step != self.step
            or seed not in self.seeds
            or (root / HOLD_FILE).exists()
        ):
            return
        (root / HOLD_FILE).write_text(json.dumps({"pid": os.getpid()}))
        while not Signals.recorded and not (root / RELEASE_FILE).exists():
            time.sleep(0.05)


def fault_sweep(tmp_path: Path, seeds: list[int], hold: list[int], **extra) -> Path:
    """A grid of `seeds` x 24 steps of the tiny copy model whose trials of `hold` seeds hold."""
    callback = {"class_path": "test_sweep_faults.HoldOnce", "init_args": {"step": HOLD_STEP}}
    callback["init_args"]["seeds"] = hold
    args = [
        f"--trainer.max_steps={MAX_STEPS}",
        "--trainer.log_every_n_steps=1",
        "--test_after_fit=false",
        f"--trainer.callbacks+={json.dumps(callback)}",
    ]
    space = {"model.init_args.layer.init_args.recurrent_init": {"choices": ["shift"]}}
    return write_sweep(tmp_path, space, seeds=seeds, args=args, **extra)


def postgres_extra() -> dict:
    return {"storage": postgres_url(), "heartbeat": {"interval": 1, "grace": 4}}


def fault_env() -> dict[str, str]:
    """The test's environment for workers: the repository and this folder importable."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wave_lightning", "sweep", *args]


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=log.parent, env=fault_env(), stdout=out, stderr=subprocess.STDOUT
        )


def worker(path: Path, log: Path) -> subprocess.Popen:
    return start(sweep_command("worker", str(path), "--threads=1"), log)


def held(run: Path) -> int:
    """Wait until the run's first attempt holds; the pid of its training process."""
    wait_for(lambda: (run / HOLD_FILE).is_file(), 480, f"{run.name} to hold at step {HOLD_STEP}")
    return json.loads((run / HOLD_FILE).read_text())["pid"]


def study_of(sweep) -> optuna.Study:
    return optuna.load_study(study_name=sweep.study, storage=open_storage(sweep))


def rows_of(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_every_step_once(run: Path) -> None:
    """metrics.csv: one train row per step and one validation row per epoch (2 steps), in order
    and at the steps an uninterrupted run logs them, whatever checkpoint the retry resumed."""
    rows = rows_of(run)
    for name, first in (("train/loss", 0), ("val/loss", 1)):
        steps = [int(row["step"]) for row in rows if row[name]]
        assert steps == list(range(first, MAX_STEPS, 2 if first else 1)), (name, steps)


def assert_completed(run, trial) -> None:
    """completed.json of a run that reached MAX_STEPS, with the size and step time its trial
    recorded (the step times of the attempts before a resume kept in the checkpoint)."""
    record = json.loads((run / "completed.json").read_text())
    assert record["step"] == MAX_STEPS
    assert record["params"] == trial.user_attrs["params"] > 0
    assert record["step_seconds"] == trial.user_attrs["step_seconds"] > 0


def assert_retried(sweep, killed: int, step: int, reason: str) -> optuna.trial.FrozenTrial:
    """Every point COMPLETE once; trial `killed` FAIL with `reason`, its retry COMPLETE from
    `step` in the same folder, logged once per step; status naming both. The retry."""
    study = study_of(sweep)
    trials = study.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert points_of(done) == points_of([t for t in trials if "failed_trial" not in t.system_attrs])
    assert len(done) == len(points_of(done))
    failed = study.get_trials()[killed]
    assert (failed.state, failed.user_attrs["fail_reason"]) == (TrialState.FAIL, reason)
    (retry,) = [t for t in trials if t.system_attrs.get("retry_history") == [killed]]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"] == failed.user_attrs["run_dir"]
    assert retry.user_attrs["resumed_from_step"] == step
    run = sweep.root / retry.user_attrs["run_dir"]
    assert_completed(run, retry)
    assert_every_step_once(run)
    status = status_text(study, sweep)
    assert f"failed: trial {killed}: {reason}; retried as trial {retry.number}" in status
    assert (
        f"resumed: trial {retry.number} (retry of trial {killed}) from step {step}, COMPLETE"
        in (status)
    )
    return retry


def drop(sweep) -> None:
    """Delete a PostgreSQL test study."""
    if sweep.storage is not None:
        optuna.delete_study(study_name=sweep.study, storage=open_storage(sweep))
        sqlalchemy.create_engine(sweep.storage).dispose()


@pytest.mark.slow
def test_journal_sigkill_of_the_second_worker(tmp_path):
    path = fault_sweep(tmp_path, seeds=[0, 1], hold=[0, 1])
    sweep = load_sweep(path)
    launcher = start(sweep_command("run", str(path), "--workers", "2"), tmp_path / "run.log")
    pids = [held(sweep.root / f"trial-000{n}") for n in (0, 1)]  # both hold: pick the victim
    study = study_of(sweep)
    workers = {t.user_attrs["worker"]["pid"]: t for t in study.get_trials()}
    second = max(workers)  # started second: the in-order wait left it a zombie
    victim = workers[second]
    os.kill(second, signal.SIGKILL)
    other = 1 - victim.number
    (sweep.root / f"trial-000{other}" / RELEASE_FILE).touch()
    assert launcher.wait(timeout=600) == 128 + signal.SIGKILL
    out = (tmp_path / "run.log").read_text()
    assert f"worker {second} was killed by SIGKILL" in out
    reason = f"its worker {victim.user_attrs['worker']['host']}:{second} is gone"
    retry = assert_retried(sweep, victim.number, 10, reason)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # no orphan training
    assert retry.number == 2 and "best: trial " in out
    assert f"report: wave-lightning sweep report {path}" in out


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_sigkill_of_the_first_worker(tmp_path):
    path = fault_sweep(tmp_path, seeds=[0], hold=[0], **postgres_extra())
    sweep = load_sweep(path)
    first = worker(path, tmp_path / "first.log")
    held(sweep.root / "trial-0000")
    second = worker(path, tmp_path / "second.log")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    host = study_of(sweep).trials[0].user_attrs["worker"]["host"]
    reason = (
        f"no heartbeat for over 4 s from its worker {host}:{first.pid} (killed, frozen or cut off)"
    )
    study = study_of(sweep)
    assert "fail_reason" not in study.trials[0].user_attrs  # Optuna failed it: no reason stored
    status = status_text(study, sweep)
    assert f"failed: trial 0: {reason}; retried as trial 1" in status
    assert study.trials[1].user_attrs["resumed_from_step"] == 10
    assert_every_step_once(sweep.root / "trial-0000")
    drop(sweep)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "signum", "step", "reason"),
    [
        ("journal", signal.SIGKILL, 10, KILLED),
        (
            "postgres",
            signal.SIGTERM,
            HOLD_STEP,
            f"preempted (SIGTERM): stopped at step {HOLD_STEP} with checkpoints/preempted.ckpt",
        ),
    ],
)
def test_signal_to_the_trial_process_retries_it(tmp_path, storage, signum, step, reason):
    extra = postgres_extra() if storage == "postgres" else {}
    path = fault_sweep(tmp_path, seeds=[0], hold=[0], **extra)
    sweep = load_sweep(path)
    process = worker(path, tmp_path / "worker.log")
    os.kill(held(sweep.root / "trial-0000"), signum)
    assert process.wait(timeout=600) == 0, (tmp_path / "worker.log").read_text()
    assert_retried(sweep, 0, step, reason)
    log = (tmp_path / "worker.log").read_text()
    assert f"trial 0 (1 of 1): FAIL {reason}; retried as trial 1" in log
    assert "trial 1 (1 of 1, retry of trial 0): COMPLETE val/loss=" in log
    drop(sweep)


@pytest.mark.slow
def test_sigterm_to_the_worker_preempts_its_trial(tmp_path):
    path = fault_sweep(tmp_path, seeds=[0], hold=[0])
    sweep = load_sweep(path)
    process = worker(path, tmp_path / "worker.log")
    held(sweep.root / "trial-0000")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=600) == 128 + signal.SIGTERM
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "stopped by SIGTERM after 1 trials" in (tmp_path / "worker.log").read_text()
    again = worker(path, tmp_path / "again.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()
    reason = f"preempted (SIGTERM): stopped at step {HOLD_STEP} with checkpoints/preempted.ckpt"
    assert_retried(sweep, 0, HOLD_STEP, reason)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_frozen_worker_and_trial_woken_after_the_retry(tmp_path):
    path = fault_sweep(tmp_path, seeds=[0], hold=[0], **postgres_extra())
    sweep = load_sweep(path)
    run = sweep.root / "trial-0000"
    frozen = worker(path, tmp_path / "frozen.log")
    child = held(run)
    os.kill(child, signal.SIGSTOP)
    frozen.send_signal(signal.SIGSTOP)
    other = worker(path, tmp_path / "other.log")
    waiting = f"trial 1: waiting for trial 0 (worker {socket.gethostname()}:{frozen.pid})"
    wait_for(lambda: waiting in (tmp_path / "other.log").read_text(), 480, "the retry's wait")
    (run / RELEASE_FILE).touch()
    os.kill(child, signal.SIGCONT)
    frozen.send_signal(signal.SIGCONT)
    assert frozen.wait(timeout=600) == 0, (tmp_path / "frozen.log").read_text()
    assert other.wait(timeout=600) == 0, (tmp_path / "other.log").read_text()
    left = "trial 0 (1 of 1): was failed and retried while this worker was silent"
    assert left in (tmp_path / "frozen.log").read_text()
    assert "TrialTakenOver: trial 0 is FAIL: another attempt owns its run folder" in (
        (run / "trial.log").read_text()
    )
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["resumed_from_step"] == 10
    assert_every_step_once(run)
    drop(sweep)


@pytest.mark.slow
def test_a_metric_no_validation_logs_stops_the_sweep(tmp_path):
    path = fault_sweep(
        tmp_path, seeds=[0, 1], hold=[], metric={"name": "val/los", "direction": "minimize"}
    )
    sweep = load_sweep(path)
    result = subprocess.run(
        sweep_command("run", str(path)), env=fault_env(), capture_output=True, text=True
    )
    assert result.returncode == 1, result.stdout + result.stderr
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    message = (
        "the sweep's metric 'val/los' was not logged by validation at step 2; "
        "it logged train/loss, val/acc, val/loss"
    )
    assert study.trials[0].user_attrs["fail_reason"].endswith(f"MetricNotLogged: {message}")
    assert f"stopped: trial 0: {message}" in status_text(study, sweep)
    assert f"the sweep is stopped: trial 0: {message}" in result.stdout


def storage_extra(storage: str) -> dict:
    if storage == "postgres":
        return {"storage": postgres_url(), "heartbeat": {"interval": 1, "grace": 2}}
    return {"heartbeat": {"interval": 1, "grace": 2}}


STORAGES = ["journal", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("storage", STORAGES)
def test_claim_windows(tmp_path, storage):
    path = fault_sweep(tmp_path, seeds=[0], hold=[], **storage_extra(storage))
    sweep = load_sweep(path)
    study = open_study(sweep, open_storage(sweep))
    first = claim_waiting(study)
    if storage == "journal":  # its worker died: on a database, its heartbeat stops
        first.set_user_attr("worker", {**worker_identity(), "pid": dead_pid()})
    wait_for(lambda: recover_dead_trials(study, sweep) == [0], 60, "the dead trial's recovery")
    retry = study.get_trials()[1]
    assert retry.state == TrialState.WAITING and "worker" not in retry.user_attrs
    # the retry caught between the WAITING -> RUNNING write of its claim and the claim's records
    study._storage.set_trial_state_values(retry._trial_id, state=TrialState.RUNNING)
    assert recover_dead_trials(study, sweep) == []  # not failed again for the dead one's worker
    # ... and its claimer died there, before a heartbeat: failed after the grace
    wait_for(lambda: recover_dead_trials(study, sweep) == [1], 60, "the orphan's recovery")
    assert study.get_trials()[1].user_attrs["fail_reason"] == "its worker died while claiming it"
    claimed = claim_waiting(study)
    assert claimed.number == 2 and claimed.user_attrs["worker"]["pid"] == os.getpid()
    assert recover_dead_trials(study, sweep) == []  # alive: this pid, a fresh heartbeat
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
    assert study.get_trials()[2].system_attrs["retry_history"] == [0, 1]
    drop(sweep)


def test_a_point_is_retried_at_most_max_retries_times(tmp_path):
    sweep = load_sweep(fault_sweep(tmp_path, seeds=[0], hold=[], max_retries=1))
    study = open_study(sweep, open_storage(sweep))
    for number in (0, 1):  # the first attempt and its one retry, both lose their worker
        trial = claim_waiting(study)
        assert trial.number == number
        trial.set_user_attr("worker", {**worker_identity(), "pid": dead_pid()})
        assert recover_dead_trials(study, sweep) == [number]
    assert claim_waiting(study) is None  # no third attempt
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]
    assert "retried as trial 1" in status_text(study, sweep)


def test_one_point_grid_is_told_without_the_grid_sampler(tmp_path):
    sweep = load_sweep(fault_sweep(tmp_path, seeds=[0], hold=[]))
    study = open_study(sweep, open_storage(sweep))
    trial = claim_waiting(study)
    assert position(study, sweep, trial) == "1 of 1"
    study.tell(trial, 0.5)  # GridSampler.after_trial raised KeyError 'grid_id' here
    assert [(t.state, t.value) for t in study.get_trials()] == [(TrialState.COMPLETE, 0.5)]


FIRST_POINT = {"seed": 0, "model.init_args.layer.init_args.recurrent_init": "shift"}


def claimed_first_trial(tmp_path: Path) -> tuple:
    """A one-seed fault sweep with its first point claimed and an empty checkpoints/ folder:
    (sweep, study, trial, run folder)."""
    sweep = load_sweep(fault_sweep(tmp_path, seeds=[0], hold=[]))
    study = open_study(sweep, open_storage(sweep))
    trial = claim_waiting(study)
    run = sweep.root / "trial-0000"
    (run / "checkpoints").mkdir(parents=True)
    return sweep, study, trial, run


def test_a_retry_resumes_from_the_newest_readable_checkpoint(tmp_path):
    sweep, study, trial, run = claimed_first_trial(tmp_path)
    torch.save({"global_step": 7, "state_dict": {}}, run / "checkpoints" / "preempted.ckpt")
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 9, "state_dict": {"w": torch.zeros(1000)}}, last)
    last.write_bytes(last.read_bytes()[:100])  # a kill while it was written
    os.utime(run / "checkpoints" / "preempted.ckpt", ns=(0, 10**9))
    with open(run / "metrics.csv", "w") as handle:
        handle.write("epoch,step,train/loss\n" + "".join(f"0,{s},1.0\n" for s in range(9)))
    lines = []
    command = prepare(trial, sweep, run, FIRST_POINT, lines.append)
    assert lines == ["trial 0: resumes from step 7 (preempted.ckpt)"]
    assert command[-2:] == ["--ckpt_path", "last"]
    assert study.get_trials()[0].user_attrs["resumed_from_step"] == 7
    assert [int(r["step"]) for r in rows_of(run)] == list(range(7))  # the resume logs 7 on
    assert shlex.split((run / "command.txt").read_text()) == command
    short = "--model.init_args.layer.init_args.recurrent_init=shift --seed_everything 0"
    assert trial.user_attrs["command"] == f"{short} (all of it: trial-0000/command.txt)"


def test_a_retry_without_a_readable_checkpoint_starts_afresh_beside_the_old_files(tmp_path):
    sweep, study, trial, run = claimed_first_trial(tmp_path)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    (run / "metrics.csv").write_text("epoch,step,train/loss\n0,0,1.0\n")
    lines = []
    with pytest.warns(UserWarning, match="last.ckpt"):
        command = prepare(trial, sweep, run, FIRST_POINT, lines.append)
    assert "--ckpt_path" not in command
    assert lines == [
        "trial-0000: no readable checkpoint; set metrics.csv aside as metrics.csv.old",
        "trial-0000: no readable checkpoint; set checkpoints/last.ckpt aside as "
        "checkpoints/last.ckpt.old",
    ]
    assert (run / "metrics.csv.old").read_text() == "epoch,step,train/loss\n0,0,1.0\n"
    assert (run / "checkpoints" / "last.ckpt.old").read_bytes() == b"PK\x03\x04 cut short"
    assert RunFolder(run).previous_run() == []  # fit takes the folder as fresh


def local_postgres(action: str) -> None:
    """Stop (a fast shutdown, which drops every connection) or start the local test server."""
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("the outage tests stop the local server with pg_ctlcluster (Debian)")
    version = sorted(os.listdir("/etc/postgresql"), key=float)[-1]
    fast = ["-m", "fast"] if action == "stop" else []
    subprocess.run(["pg_ctlcluster", version, "main", action, *fast], check=True)


@contextmanager
def server_stopped() -> Iterator[None]:
    """The local PostgreSQL is down inside the block, and up again after it whatever happens."""
    local_postgres("stop")
    try:
        yield
    finally:
        local_postgres("start")


def outage_sweep(tmp_path: Path, seeds: list[int], limit_s: int) -> Path:
    """A fault sweep on PostgreSQL whose first attempts hold until released."""
    extra = {**postgres_extra(), "outage_limit": limit_s}
    return fault_sweep(tmp_path, seeds=seeds, hold=seeds, **extra)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_outage_within_the_limit_is_ridden_out(tmp_path):
    path = outage_sweep(tmp_path, seeds=[0, 1], limit_s=120)
    sweep = load_sweep(path)
    launcher = start(sweep_command("run", str(path), "--workers", "2"), tmp_path / "run.log")
    runs = [sweep.root / f"trial-000{n}" for n in (0, 1)]
    for run in runs:
        held(run)
    with server_stopped():
        for run in runs:  # both train on, past the end of the fit, while the server is down
            (run / RELEASE_FILE).touch()
        time.sleep(10)  # longer than the heartbeat grace (4 s)
    assert launcher.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # no FAIL, no retry
    out = (tmp_path / "run.log").read_text()
    logs = [out, *[(run / LOG_FILE).read_text() for run in runs]]
    assert not any("Traceback" in log for log in logs)
    assert out.count("went away") >= 2 and out.count("is back after") >= 2  # each worker
    for trial, run in zip(study.trials, runs, strict=True):
        assert "resumed_from_step" not in trial.user_attrs  # it trained through the outage
        assert sorted(trial.intermediate_values) == list(range(2, MAX_STEPS + 1, 2))
        assert_every_step_once(run)
        assert "went away" in (run / LOG_FILE).read_text()  # its reports waited
    drop(sweep)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_outage_past_the_limit_is_one_error_line_and_a_rerun_finishes(tmp_path):
    path = outage_sweep(tmp_path, seeds=[0], limit_s=4)
    sweep = load_sweep(path)
    launcher = start(sweep_command("run", str(path), "--workers", "1"), tmp_path / "run.log")
    run = sweep.root / "trial-0000"
    held(run)
    with server_stopped():
        (run / RELEASE_FILE).touch()
        assert launcher.wait(timeout=300) == 1
    out = (tmp_path / "run.log").read_text()
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 2  # the worker's and the launcher's: one line each
    shown = shown_url(sweep.storage)
    for line in errors:
        assert line.startswith(f"error: storage {shown} stayed unreachable for ")
        assert line.endswith(
            "longer than the sweep's outage_limit (4 s); run the same command again once it is back"
        )
    again = start(sweep_command("run", str(path), "--workers", "1"), tmp_path / "again.log")
    assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()
    study = study_of(sweep)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1 and done[0].params["seed"] == 0  # COMPLETE exactly once
    assert_completed(run, done[0])
    drop(sweep)
