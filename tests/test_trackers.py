"""Trackers beside metrics.csv: each conf/logger/ config, what W&B (offline) and MLflow (a local
SQLite store) recorded read back and compared with metrics.csv, and a sweep trial's grouping by
study with its end state. Real packages, local files, no network."""

import json
import struct
import time
from pathlib import Path

import optuna
import pytest
import wandb
from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow.tracking import MlflowClient
from wandb.proto import wandb_internal_pb2

from tests.helpers import ROOT, tiny_copy_args
from tests.sweeps import metric_column, sweep_cli, write_sweep
from wave_lightning.cli import main
from wave_lightning.fit import check_args
from wave_lightning.run.loggers import AppendingCSVLogger
from wave_lightning.run.trackers import (
    COMPLETE,
    FAIL,
    PREEMPTED,
    PRUNED,
    MLflowTracker,
    TensorBoardTracker,
    WandbTracker,
    end_state,
)
from wave_lightning.run.trial import trial_environment
from wave_lightning.sweep.spec import load_sweep

LOGGERS = ROOT / "conf/logger"
TINY = [
    *tiny_copy_args(delay=2),
    "--data.batch_size=8", "--data.train_batches=3", "--data.val_size=16",
    "--data.test_size=16", "--trainer.log_every_n_steps=1", "--trainer.accelerator=cpu",
]  # fmt: skip


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No tracker reaches a network; a store or project set outside the test is not used."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("MLFLOW_TRACKING_URI", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    for name in trial_environment("s", 0, {}):
        monkeypatch.delenv(name, raising=False)


def fit(run: Path, *args: str, max_steps: int = 6) -> None:
    main(["fit", *TINY, f"--trainer.default_root_dir={run}", f"--trainer.max_steps={max_steps}",
          *args])  # fmt: skip


def logger_config(name: str) -> str:
    return f"--config={LOGGERS / name}.yaml"


def csv_history(run: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) of every row of metrics.csv that logged `name`."""
    rows = [row for row in (run / "metrics.csv").read_text().splitlines()]
    header = rows[0].split(",")
    cells = [dict(zip(header, row.split(","), strict=True)) for row in rows[1:]]
    return [(int(cell["step"]), float(cell[name])) for cell in cells if cell[name]]


def mlflow_history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


def only_run(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize(
    ("config", "tracker"),
    [("csv", None), ("tensorboard", TensorBoardTracker), ("wandb", WandbTracker),
     ("mlflow", MLflowTracker)],
)  # fmt: skip
def test_every_logger_config_keeps_metrics_csv_and_adds_its_tracker(config, tracker, tmp_path):
    run = tmp_path / "run"
    cli = check_args([*TINY, logger_config(config), f"--trainer.default_root_dir={run}"])
    loggers = cli.trainer.loggers
    assert isinstance(loggers[0], AppendingCSVLogger) and Path(loggers[0].log_dir) == run
    assert [type(each) for each in loggers[1:]] == ([tracker] if tracker else [])
    assert not run.exists()  # checked, nothing written


@pytest.mark.slow
def test_mlflow_records_what_metrics_csv_holds_and_a_resume_continues_its_run(tmp_path):
    run = tmp_path / "run"
    fit(run, logger_config("mlflow"))
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    first = only_run(client, "wave-lightning")
    assert first.info.run_name == "run" and first.info.status == "FINISHED"
    assert first.data.tags["state"] == COMPLETE
    for name in ("train/loss", "val/loss", "test/acc"):
        assert mlflow_history(client, first.info.run_id, name) == csv_history(run, name)

    fit(run, logger_config("mlflow"), "--ckpt_path=last", max_steps=9)
    resumed = only_run(client, "wave-lightning")
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    val_loss = mlflow_history(client, first.info.run_id, "val/loss")
    assert [step for step, _ in val_loss] == [2, 5, 8]
    assert val_loss == csv_history(run, "val/loss")


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file, read as `wandb sync` reads them (a LevelDB log:
    32 KiB blocks of records, each with a 7-byte header; after the file's 7-byte header)."""
    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    records, pieces, at = [], b"", header
    while at + header <= len(data):
        if block - at % block < header:  # the block's tail is padding
            at += block - at % block
            continue
        _, length, kind = struct.unpack("<IHB", data[at : at + header])
        pieces += data[at + header : at + header + length]
        at += header + length
        if kind in (1, 4):  # a full record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(pieces))
            pieces = b""
    return records


def finished_wandb_records(path: Path, timeout: float = 60.0) -> list:
    """The run file's records once its `exit` record is written: `wandb.finish()` returns before
    W&B's service process has flushed the file (measured: 7 bytes, then 9.5 kB half a second
    later)."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if records and records[-1].HasField("exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def items(updates) -> dict[str, str]:
    return {item.key or "/".join(item.nested_key): item.value_json for item in updates}


def test_wandb_offline_files_hold_the_trials_group_config_and_metrics(monkeypatch, tmp_path):
    params = {"optimizer.init_args.lr": 0.01}
    for name, value in trial_environment("copy-study", 3, params).items():
        monkeypatch.setenv(name, value)
    run = tmp_path / "trial-0003"
    fit(run, logger_config("wandb"))
    wandb.finish()  # the process's exit would; this test's process goes on

    (path,) = run.glob("wandb/offline-run-*/run-*.wandb")
    records = finished_wandb_records(path)
    (started,) = [r.run for r in records if r.HasField("run")]
    assert (started.display_name, started.run_group, started.project) == (
        "trial-0003",
        "copy-study",
        "wave-lightning",
    )
    assert (run / "trackers.json").read_text().count(started.run_id) == 1
    config = items(started.config.update)
    assert json.loads(config["trial"]) == {"study": "copy-study", "number": 3, "params": params}
    history = [items(r.history.item) for r in records if r.HasField("history")]
    logged = [(int(h["trainer/global_step"]), float(h["val/loss"])) for h in history
              if "val/loss" in h]  # fmt: skip
    assert logged == csv_history(run, "val/loss")
    summary = [items(r.summary.update) for r in records if r.HasField("summary")]
    assert [s["state"] for s in summary if "state" in s] == ['"RUNNING"', '"COMPLETE"']

    fit(run, logger_config("wandb"), "--ckpt_path=last", max_steps=9)
    wandb.finish()
    files = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and {path.name for path in files} == {f"run-{started.run_id}.wandb"}


class Raise(Callback):
    """Raises `error` (pruned, stopped or error) when training starts."""

    def __init__(self, error: str) -> None:
        self.error = error

    def on_train_start(self, trainer, pl_module) -> None:
        errors = {"pruned": optuna.TrialPruned, "error": RuntimeError}
        raise errors[self.error]("raised by the test")


@pytest.mark.parametrize(
    ("exception", "state"),
    [(optuna.TrialPruned(), PRUNED), (SIGTERMException(), PREEMPTED),
     (KeyboardInterrupt(), PREEMPTED), (ValueError(), FAIL)],
)  # fmt: skip
def test_how_a_run_ended_names_its_state(exception, state):
    assert end_state(exception) == state


@pytest.mark.parametrize(("error", "state", "status"), [("pruned", PRUNED, "KILLED"),
                                                        ("error", FAIL, "FAILED")])  # fmt: skip
def test_an_mlflow_trial_is_grouped_by_study_with_its_end_state(
    error, state, status, monkeypatch, tmp_path
):
    params = {"model.init_args.layer.init_args.n_ch": 2, "seed": 1}
    for name, value in trial_environment("copy-study", 2, params).items():
        monkeypatch.setenv(name, value)
    run = tmp_path / "sweep" / "trial-0002"
    raising = [
        "--trainer.callbacks+=tests.test_trackers.Raise",
        f"--trainer.callbacks.error={error}",
    ]
    with pytest.raises((optuna.TrialPruned, RuntimeError)):
        fit(run, logger_config("mlflow"), *raising)

    client = MlflowClient(f"sqlite:///{tmp_path / 'sweep/mlflow.db'}")  # the study's store
    trial = only_run(client, "copy-study")
    assert trial.info.run_name == "trial-0002" and trial.info.status == status
    assert trial.data.tags["state"] == state
    assert {"study": "copy-study", "trial": "2"}.items() <= trial.data.tags.items()
    assert {"trial/model.init_args.layer.init_args.n_ch": "2", "trial/seed": "1"}.items() <= (
        trial.data.params.items()
    )


@pytest.mark.slow
def test_a_sweeps_trials_land_in_the_studys_mlflow_experiment(tmp_path):
    configs = [str(ROOT / f"conf/{name}.yaml") for name in ("data/copy", "model/wrnn")]
    path = write_sweep(
        tmp_path,
        {"optimizer.init_args.lr": {"choices": [0.01, 0.001]}},
        seeds=[0],
        args=["--trainer.max_steps=2"],
        configs=[*configs, str(LOGGERS / "mlflow.yaml")],
    )
    result = sweep_cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs/mlflow.db'}")  # beside the trials
    runs = client.search_runs([client.get_experiment_by_name(load_sweep(path).study).experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["trial-0000", "trial-0001"]
    for each in runs:
        folder = tmp_path / "runs" / each.info.run_name
        assert each.data.tags["state"] == COMPLETE and each.info.status == "FINISHED"
        assert [v for _, v in mlflow_history(client, each.info.run_id, "val/loss")] == (
            metric_column(folder, "val/loss")
        )
    assert sorted(r.data.params["trial/optimizer.init_args.lr"] for r in runs) == ["0.001", "0.01"]
