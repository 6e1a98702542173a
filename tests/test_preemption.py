"""Preemption: a run stopped by SIGTERM or SIGUSR1 checkpoints at a step boundary and resumes
exactly (same final weights and metrics as an uninterrupted run), also under SLURM's requeue."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from tests.helpers import path_with_fake, tiny_copy_args
from wave_lightning.run.folder import RunFolder
from wave_lightning.run.preemption import PREEMPTED_EXIT

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# copy task, tiny wRNN: 3 batches per epoch, 6 steps; the signal comes after step 4 (epoch 1)
TINY = [
    *tiny_copy_args(
        delay=2, memory_length=2, batch_size=4, train_batches=3, val_size=8, test_size=4
    ),
    "--trainer.max_steps", "6",
    "--trainer.log_every_n_steps", "1",
    "--test_after_fit", "false",
]  # fmt: skip
STOP_AT = 4


class SignalAtStep(Callback):
    """Sends `signum` to the rank-0 process when global step `step` has finished (a test's
    preemption; under DDP that is the process the user started, which passes it on)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if trainer.global_step == self.step and trainer.global_rank == 0:
            os.kill(os.getpid(), self.signum)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without SLURM variables, one thread, the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    path = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def fit(
    root: Path, *args: str, env: dict | None = None, code: int = 0
) -> subprocess.CompletedProcess:
    """`wave-lightning fit` of the tiny run in `root`; fails the test unless it exits `code`."""
    command = [sys.executable, "-m", "wave_lightning", "fit", *TINY]
    command += ["--trainer.default_root_dir", str(root), *args]
    result = subprocess.run(command, env=env or clean_env(), capture_output=True, text=True)
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def preempted_fit(root: Path, *args: str, env: dict | None = None) -> None:
    """A fit stopped by a signal: it exits PREEMPTED_EXIT (143), never 0, and says nothing of
    the test it did not run."""
    result = fit(root, *args, env=env, code=PREEMPTED_EXIT)
    assert "logs: " not in result.stdout  # after_fit did not run


def signal_at(signum: int, step: int = STOP_AT) -> str:
    """The CLI argument adding a SignalAtStep callback."""
    init_args = f'{{"step": {step}, "signum": {int(signum)}}}'
    callback = f'{{"class_path": "test_preemption.SignalAtStep", "init_args": {init_args}}}'
    return f"--trainer.callbacks+={callback}"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def last_val_loss(root: Path) -> float:
    with open(root / "metrics.csv") as file:
        return [float(row["val/loss"]) for row in csv.DictReader(file) if row["val/loss"]][-1]


def logged(root: Path) -> list[tuple[int, list[str]]]:
    """Every metrics.csv row as (step, the metrics it holds), in step order."""
    with open(root / "metrics.csv") as file:
        rows = [
            (int(row.pop("step")), sorted(k for k, v in row.items() if v))
            for row in csv.DictReader(file)
        ]
    return sorted(rows)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    fit(root)
    return root


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sigterm")
    preempted_fit(root, signal_at(signal.SIGTERM))
    return root


@pytest.fixture(scope="module")
def stopped_by_sigterm(sigterm_run) -> dict:
    """The checkpoint SIGTERM left (read before a resume deletes it)."""
    return load(sigterm_run / "checkpoints" / "preempted.ckpt")


@pytest.mark.slow
def test_sigterm_saves_checkpoint_at_step_boundary(sigterm_run, stopped_by_sigterm):
    checkpoint = stopped_by_sigterm
    assert checkpoint["global_step"] == STOP_AT
    assert checkpoint["epoch"] == 1  # mid-epoch: step 4 is batch 1 of epoch 1
    assert load(sigterm_run / "checkpoints" / "last.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_sigterm_resume_equals_uninterrupted(sigterm_run, stopped_by_sigterm, uninterrupted):
    result = fit(sigterm_run, "--ckpt_path", "last")
    assert "preempted.ckpt" in result.stdout + result.stderr  # `last` chose the newest
    resumed = load(sigterm_run / "checkpoints" / "last.ckpt")
    reference = load(uninterrupted / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == 6
    assert_same_weights(resumed["state_dict"], reference["state_dict"])
    assert last_val_loss(sigterm_run) == last_val_loss(uninterrupted)
    assert logged(sigterm_run) == logged(uninterrupted)  # every step once, at the same step
    assert not (sigterm_run / "checkpoints" / "preempted.ckpt").exists()  # done with it


@pytest.mark.slow
def test_killed_run_resumes_from_last_with_the_same_logged_steps(tmp_path, uninterrupted):
    fit(tmp_path, signal_at(signal.SIGKILL), code=-signal.SIGKILL)  # no preempted.ckpt
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3  # an epoch's end
    fit(tmp_path, "--ckpt_path", "last")
    resumed = load(tmp_path / "checkpoints" / "last.ckpt")
    reference = load(uninterrupted / "checkpoints" / "last.ckpt")
    assert_same_weights(resumed["state_dict"], reference["state_dict"])
    assert logged(tmp_path) == logged(uninterrupted)  # Lightning alone logs steps 4..6, not 3..5


@pytest.mark.slow
def test_sigusr1_stops_like_sigterm(tmp_path, stopped_by_sigterm):
    preempted_fit(tmp_path, signal_at(signal.SIGUSR1))
    by_usr1 = load(tmp_path / "checkpoints" / "preempted.ckpt")
    assert by_usr1["global_step"] == STOP_AT
    assert_same_weights(by_usr1["state_dict"], stopped_by_sigterm["state_dict"])


@pytest.mark.slow
def test_ddp_sigterm_resume_equals_uninterrupted(tmp_path, stopped_by_sigterm, uninterrupted):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    preempted_fit(tmp_path, *ddp, signal_at(signal.SIGTERM))
    stopped = load(tmp_path / "checkpoints" / "preempted.ckpt")
    assert stopped["global_step"] == STOP_AT
    fit(tmp_path, *ddp, "--ckpt_path", "last")
    resumed = load(tmp_path / "checkpoints" / "last.ckpt")
    reference = load(uninterrupted / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 6
    for name, value in reference["state_dict"].items():  # DDP averages: equal to rounding
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=1e-6)


FAKE_SCONTROL = """#!/bin/sh
# stands in for SLURM: records the requeue, then stops the job as SLURM does (SIGTERM)
echo "$@" > "$SCONTROL_LOG"
kill -TERM $PPID
"""


@pytest.mark.slow
def test_slurm_sigusr1_requeues_and_checkpoints(tmp_path, stopped_by_sigterm):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    env = clean_env(
        PATH=path_with_fake(bin_dir, "scontrol", FAKE_SCONTROL),
        SCONTROL_LOG=str(log),
        SLURM_NTASKS="1",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_JOB_NAME="wave",
        SLURM_JOB_ID="4242",
        SLURM_PROCID="0",
        SLURM_LOCALID="0",
        SLURM_NODEID="0",
        SLURM_NODELIST="localhost",
    )
    root = tmp_path / "run"
    preempted_fit(root, signal_at(signal.SIGUSR1), env=env)
    assert log.read_text().split() == ["requeue", "4242"]
    assert not list(root.glob("hpc_ckpt_*.ckpt"))  # Lightning's, written inside its handler
    preempted = load(root / "checkpoints" / "preempted.ckpt")  # of the step the signal ended
    assert preempted["global_step"] == STOP_AT
    assert RunFolder(root).newest_checkpoint() == str(root / "checkpoints/preempted.ckpt")
    assert_same_weights(preempted["state_dict"], stopped_by_sigterm["state_dict"])


SIGNAL_CASE = """
import os, signal, sys, time
from wave_lightning.run.signals import Signals
Signals.begin()
{before}
os.kill(os.getpid(), signal.{name})
time.sleep(0.5)  # the handler runs; a default action would end the process here
print(Signals.recorded)
"""


@pytest.mark.parametrize(
    ("name", "before", "slurm", "outcome"),
    [
        ("SIGTERM", "", False, "1"),  # recorded: stop after the step
        ("SIGUSR1", "", False, "1"),  # outside SLURM, the same as SIGTERM
        ("SIGUSR1", "", True, "2"),  # SLURM's time-limit signal: stop and requeue
        ("SIGTERM", "Signals.ended = True", False, -signal.SIGTERM),  # after training: default
        ("SIGUSR1", "Signals.ended = True", False, -signal.SIGUSR1),  # the same outside SLURM
        ("SIGUSR1", "Signals.ended = True", True, "0"),  # SLURM's warning: the test goes on
        ("SIGUSR1", "Signals.ended = True; Signals.recorded = 1", True, "2"),  # late: recorded
    ],
)
def test_the_signal_handler_only_records(name, before, slurm, outcome):
    env = clean_env(**({"SLURM_JOB_ID": "17"} if slurm else {}))
    code = SIGNAL_CASE.format(before=before, name=name)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if isinstance(outcome, int):
        assert result.returncode == outcome, result.stderr
    else:
        assert (result.returncode, result.stdout.strip()) == (0, outcome), result.stderr
