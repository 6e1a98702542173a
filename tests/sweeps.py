"""What the sweep tests share: a tiny sweep file, the sweep and Optuna CLIs, PostgreSQL."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from wave_lightning.run.folder import RunFolder

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
    """Every logged value of `name` in a run's metrics.csv."""
    return [float(row[name]) for row in RunFolder(run).metric_rows() if row.get(name)]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


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
