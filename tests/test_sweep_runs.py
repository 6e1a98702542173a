"""Sweeps end to end: workers on the journal and on PostgreSQL, a killed worker, the report."""

import csv
import json
import signal
import statistics
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState
from scipy import stats

from tests.sweeps import (
    dead_pid,
    metric_column,
    optuna_cli,
    points_of,
    postgres_url,
    start_worker,
    sweep_cli,
    wait_for,
    write_sweep,
)
from wave_lightning.sweep.claims import claim_waiting, recover_dead_trials, worker_identity
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import open_storage, open_study

KEY = "trainer.val_check_interval"


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> dict:
    """A 4-point grid run by `sweep run --workers 2` on the journal: a validation interval past
    the 2 training batches passes the config check and fails the run (points 100)."""
    folder = tmp_path_factory.mktemp("grid")
    path = write_sweep(
        folder, {KEY: {"choices": [1, 100]}}, seeds=[0, 1], args=["--trainer.max_steps=4"]
    )
    result = sweep_cli(folder, "run", str(path), "--workers", "2")
    assert result.returncode == 0, result.stderr
    sweep = load_sweep(path)
    study = optuna.load_study(study_name=sweep.study, storage=open_storage(sweep))
    trials = study.get_trials()
    return {
        "folder": folder,
        "path": path,
        "sweep": sweep,
        "study": study,
        "trials": trials,
        "done": [t for t in trials if t.state == TrialState.COMPLETE],
        "failed": [t for t in trials if t.state == TrialState.FAIL],
    }


@pytest.fixture(scope="module")
def grid_report(grid_run) -> Path:
    """The grid's `sweep report` folder."""
    assert sweep_cli(grid_run["folder"], "report", str(grid_run["path"])).returncode == 0
    return grid_run["sweep"].root / "report"


@pytest.mark.slow
def test_grid_runs_every_point_once_on_two_workers(grid_run):
    assert len(grid_run["trials"]) == 4
    assert points_of(grid_run["done"]) == [(("seed", 0), (KEY, 1)), (("seed", 1), (KEY, 1))]
    assert points_of(grid_run["failed"]) == [(("seed", 0), (KEY, 100)), (("seed", 1), (KEY, 100))]
    assert len({t.user_attrs["worker"]["pid"] for t in grid_run["trials"]}) == 2


@pytest.mark.slow
def test_grid_failed_runs_keep_fits_reason(grid_run):
    for trial in grid_run["failed"]:
        assert (
            "`val_check_interval` (100) must be less than or equal to the number of the training"
            in (trial.user_attrs["fail_reason"])
        )


@pytest.mark.slow
def test_grid_trial_value_is_the_best_logged_metric(grid_run):
    for trial in grid_run["done"]:
        run = grid_run["sweep"].root / trial.user_attrs["run_dir"]
        assert trial.value == min(metric_column(run, "val/loss"))
        assert trial.user_attrs["test/loss"] == metric_column(run, "test/loss")[-1]
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "config.yaml").is_file()


@pytest.mark.slow
def test_grid_run_again_has_nothing_to_run(grid_run):
    again = sweep_cli(grid_run["folder"], "run", str(grid_run["path"]), "--workers", "2")
    study = grid_run["study"]
    assert (
        again.stdout.strip() == f"sweep {study.study_name} is finished (4 trials); nothing to run"
    )
    assert len(study.get_trials()) == 4


@pytest.mark.slow
def test_grid_status_counts_states_and_names_the_best(grid_run):
    status = sweep_cli(grid_run["folder"], "status", str(grid_run["path"])).stdout
    study = grid_run["study"]
    assert "4 trials COMPLETE 2, FAIL 2" in status
    assert f"best: trial {study.best_trial.number} val/loss={study.best_value:.6g}" in status


@pytest.mark.slow
def test_grid_report_ablation_table(grid_run, grid_report):
    values = [t.value for t in sorted(grid_run["done"], key=lambda t: t.params["seed"])]
    cell = f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"
    low, high = stats.t.interval(
        0.95, 1, loc=statistics.fmean(values), scale=statistics.stdev(values) / 2**0.5
    )
    ci = f"[{low:.4g}, {high:.4g}]"
    table = (grid_report / "ablation.md").read_text().splitlines()
    assert table[2] == "| val_check_interval | seeds | val/loss | 95% CI | test/acc | test/loss |"
    assert table[4].startswith(f"| 1 | 2 | {cell} | {ci} |")  # one row: 100 never completed
    assert f"| val_check_interval | 1 | 2 | {cell} | {ci} |" in table


@pytest.mark.slow
def test_grid_report_trials_csv(grid_run, grid_report):
    with open(grid_report / "trials.csv", newline="") as handle:
        rows = {int(r["number"]): r for r in csv.DictReader(handle)}
    assert {n: r["state"] for n, r in rows.items()} == {
        t.number: t.state.name for t in grid_run["trials"]
    }
    for trial in grid_run["done"]:
        assert float(rows[trial.number]["val/loss"]) == trial.value


@pytest.mark.slow
def test_grid_report_best_config_and_plots(grid_run, grid_report):
    best = yaml.safe_load((grid_report / "best.yaml").read_text())
    assert best["seed_everything"] == grid_run["study"].best_trial.params["seed"]
    assert best["trainer"]["val_check_interval"] == 1
    assert best["trainer"]["callbacks"] is None and best["ckpt_path"] is None
    for plot in ("history.png", "ablation.png"):
        assert (grid_report / plot).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_grid_is_readable_by_optunas_own_cli(grid_run):
    sweep, study = grid_run["sweep"], grid_run["study"]
    where = ["--storage", str(sweep.journal), "--study-name", sweep.study]
    listed = json.loads(optuna_cli("trials", *where))
    assert sorted(t["number"] for t in listed) == [t.number for t in grid_run["trials"]]
    best_cli = json.loads(optuna_cli("best-trial", *where))
    assert (best_cli["number"], best_cli["value"]) == (study.best_trial.number, study.best_value)


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
