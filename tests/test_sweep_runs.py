"""Sweeps end to end: workers on the journal and on PostgreSQL, a killed worker, the report."""

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import (
    claim_waiting,
    open_storage,
    open_study,
    recover_dead_trials,
    worker_identity,
)

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("WAVE_LIGHTNING_TEST_POSTGRES_URL")
TINY = [
    "--model.init_args.layer.init_args.n_hid=8",
    "--model.init_args.layer.init_args.n_ch=2",
    "--data.delay=1",
    "--data.batch_size=8",
    "--data.train_batches=2",
    "--data.val_size=16",
    "--data.test_size=16",
    "--trainer.accelerator=cpu",
]


def write_sweep(folder: Path, space: dict, seeds: list, args: list, **extra) -> Path:
    data = {
        "study": f"test-{uuid.uuid4().hex[:8]}",
        "configs": [str(ROOT / "conf/data/copy.yaml"), str(ROOT / "conf/model/wrnn.yaml")],
        "args": TINY + args,
        "space": space,
        "seeds": seeds,
        "metric": {"name": "val/loss", "direction": "minimize"},
        "root": str(folder / "runs"),
        **extra,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def sweep_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wave_lightning", "sweep", *args]
    return subprocess.run(command, cwd=folder, env=env(), capture_output=True, text=True)


def optuna_cli(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("optuna")), *args, "--format", "json"]
    result = subprocess.run(command, env=env(), capture_output=True, text=True, check=True)
    return result.stdout


def points_of(trials: list) -> list[tuple]:
    return sorted(tuple(sorted(t.params.items())) for t in trials)


def metric_column(run: Path, name: str) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


@pytest.mark.slow
def test_grid_with_two_cpu_workers_on_the_journal(tmp_path):
    # a validation interval past the 2 training batches passes the config check, fails the run
    key = "trainer.val_check_interval"
    path = write_sweep(
        tmp_path, {key: {"choices": [1, 100]}}, seeds=[0, 1], args=["--trainer.max_steps=4"]
    )
    result = sweep_cli(tmp_path, "run", str(path), "--workers", "2")
    assert result.returncode == 0, result.stderr
    sweep = load_sweep(path)
    study = optuna.load_study(study_name=sweep.study, storage=open_storage(sweep))
    trials = study.get_trials()
    assert len(trials) == 4  # every grid point once, nothing twice
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert points_of(done) == [(("seed", 0), (key, 1)), (("seed", 1), (key, 1))]
    assert points_of(failed) == [(("seed", 0), (key, 100)), (("seed", 1), (key, 100))]
    for trial in failed:
        assert (
            "`val_check_interval` (100) must be less than or equal to the number of the training"
            in (trial.user_attrs["fail_reason"])
        )
    for trial in done:  # the value is the best val/loss the run logged
        run = sweep.root / trial.user_attrs["run_dir"]
        assert trial.value == min(metric_column(run, "val/loss"))
        assert trial.user_attrs["test/loss"] == metric_column(run, "test/loss")[-1]
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "config.yaml").is_file()
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2

    again = sweep_cli(tmp_path, "run", str(path), "--workers", "2")
    assert again.stdout.strip() == f"sweep {sweep.study} is finished (4 trials); nothing to run"
    assert len(study.get_trials()) == 4

    status = sweep_cli(tmp_path, "status", str(path)).stdout
    assert "4 trials COMPLETE 2, FAIL 2" in status
    assert f"best: trial {study.best_trial.number} val/loss={study.best_value:.6g}" in status

    assert sweep_cli(tmp_path, "report", str(path)).returncode == 0
    out = sweep.root / "report"
    values = [t.value for t in sorted(done, key=lambda t: t.params["seed"])]
    cell = f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"
    table = (out / "ablation.md").read_text().splitlines()
    assert table[2] == "| val_check_interval | seeds | val/loss | test/acc | test/loss |"
    assert table[4].startswith(f"| 1 | 2 | {cell} |")  # one row: 100 never completed
    assert f"| val_check_interval | 1 | 2 | {cell} |" in table
    with open(out / "trials.csv", newline="") as handle:
        rows = {int(r["number"]): r for r in csv.DictReader(handle)}
    assert {n: r["state"] for n, r in rows.items()} == {t.number: t.state.name for t in trials}
    for trial in done:
        assert float(rows[trial.number]["val/loss"]) == trial.value
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["seed_everything"] == study.best_trial.params["seed"]
    assert best["trainer"]["val_check_interval"] == 1
    assert best["trainer"]["callbacks"] is None and best["ckpt_path"] is None
    for plot in ("history.png", "ablation.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"

    where = ["--storage", str(sweep.journal), "--study-name", sweep.study]
    listed = json.loads(optuna_cli("trials", *where))
    assert sorted(t["number"] for t in listed) == [t.number for t in trials]
    best_cli = json.loads(optuna_cli("best-trial", *where))
    assert (best_cli["number"], best_cli["value"]) == (study.best_trial.number, study.best_value)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_journal_trial_of_a_dead_worker_is_queued_again_with_its_run(tmp_path):
    path = write_sweep(tmp_path, {"optimizer.init_args.lr": {"choices": [0.01]}}, [0, 1], [])
    sweep = load_sweep(path)
    study = open_study(sweep, open_storage(sweep))
    trial = claim_waiting(study)
    trial.set_user_attr("run_dir", "trial-0000")
    dead = {**worker_identity(), "pid": dead_pid()}
    trial.set_user_attr("worker", dead)
    alive = claim_waiting(study)
    alive.set_user_attr("worker", worker_identity())

    assert recover_dead_trials(study, sweep) == [trial.number]
    assert recover_dead_trials(study, sweep) == []  # once only
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING, 2: TrialState.WAITING}
    retry = study.get_trials()[2]
    assert retry.params == study.get_trials()[0].params
    assert retry.user_attrs["run_dir"] == "trial-0000"
    assert retry.system_attrs["failed_trial"] == 0
    assert "worker" not in retry.user_attrs  # the dead attempt's worker is not the retry's
    reason = f"its worker {dead['host']}:{dead['pid']} is gone"
    assert study.get_trials()[0].user_attrs["fail_reason"] == reason


def postgres_url() -> str:
    if POSTGRES:
        return POSTGRES
    if os.environ.get("WAVE_LIGHTNING_REQUIRE_POSTGRES") == "1":
        pytest.fail("WAVE_LIGHTNING_REQUIRE_POSTGRES=1 but WAVE_LIGHTNING_TEST_POSTGRES_URL unset")
    pytest.skip("WAVE_LIGHTNING_TEST_POSTGRES_URL is not set")


def start_worker(command: list[str], log: Path) -> subprocess.Popen:
    """A worker process writing to `log` (the file stays open in the child only)."""
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=log.parent, env=env(), stdout=out, stderr=out)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_killed_worker_trial_resumes_from_its_checkpoint(tmp_path):
    url = postgres_url()
    path = write_sweep(
        tmp_path,
        {"model.init_args.layer.init_args.recurrent_init": {"choices": ["shift"]}},
        seeds=[0, 1, 2],
        args=[
            "--trainer.max_steps=1200",
            "--data.train_batches=20",
            "--trainer.check_val_every_n_epoch=5",
        ],
        storage=url,
        heartbeat={"interval": 1, "grace": 4},
    )
    sweep = load_sweep(path)
    storage = open_storage(sweep)
    study = open_study(sweep, storage)
    command = [sys.executable, "-m", "wave_lightning", "sweep", "worker", str(path), "--threads=1"]
    workers = [start_worker(command, tmp_path / f"worker{i}.log") for i in (0, 1)]
    victim = workers[0]

    def victim_trial_with_checkpoint():
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            run = sweep.root / trial.user_attrs.get("run_dir", "none")
            if (
                trial.user_attrs.get("worker", {}).get("pid") == victim.pid
                and (run / "checkpoints" / "last.ckpt").is_file()
            ):
                return trial
        return None

    killed = wait_for(victim_trial_with_checkpoint, 240, "a checkpoint of the victim's trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert workers[1].wait(timeout=300) == 0, (tmp_path / "worker1.log").read_text()

    trials = study.get_trials()
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert [t.number for t in by_state[TrialState.FAIL]] == [killed.number]
    assert len(by_state[TrialState.COMPLETE]) == 3  # every point, the killed one by its retry
    assert points_of(by_state[TrialState.COMPLETE]) == points_of(trials[:3])
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"] == killed.user_attrs["run_dir"]
    assert retry.user_attrs["resumed_from_step"] > 0
    run = sweep.root / retry.user_attrs["run_dir"]
    log = (run / "trial.log").read_text()
    assert "--ckpt_path last" in log
    assert f"Restored all states from the checkpoint at {run / 'checkpoints' / 'last.ckpt'}" in log
    steps = metric_column(run, "step")  # the killed attempt's log, continued by the retry
    assert min(steps) < retry.user_attrs["resumed_from_step"] < max(steps) == 1200

    listed = json.loads(optuna_cli("trials", "--storage", url, "--study-name", sweep.study))
    assert sorted(t["number"] for t in listed) == [t.number for t in trials]
    best = json.loads(optuna_cli("best-trial", "--storage", url, "--study-name", sweep.study))
    assert best["number"] == study.best_trial.number
    optuna.delete_study(study_name=sweep.study, storage=storage)
    sqlalchemy.create_engine(url).dispose()
