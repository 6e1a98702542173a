"""Distributed training on CPU (gloo): rank-aware data, DDP equals one process, checkpoints move
between world sizes, global metrics, clear errors for bad settings."""

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from tests.helpers import tiny_copy_args
from wave_lightning.cli import main
from wave_lightning.data import CopyTask
from wave_lightning.data.batching import per_device_batch_size, split_batch
from wave_lightning.data.synthetic import TrainingStream
from wave_lightning.run.devices import requested_gpus
from wave_lightning.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
COPY = dict(delay=2, memory_length=2, batch_size=4, train_batches=2, val_size=9, test_size=4)
# one step, validated after it (val_size 9 is odd: 5 + 4 examples over two ranks, none twice)
TINY = [
    *tiny_copy_args(**COPY),
    "--trainer.val_check_interval", "1",
    "--trainer.log_every_n_steps", "1",
    "--trainer.max_steps", "1",
    "--test_after_fit", "false",
]  # fmt: skip


def fit(root: Path, *args: str) -> None:
    """`wave-lightning fit` of the tiny run in `root` in a fresh process; fails if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    )
    command = [sys.executable, "-m", "wave_lightning", "fit", *TINY]
    command += ["--trainer.default_root_dir", str(root), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def weights(root: Path) -> dict:
    checkpoint = torch.load(root / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    return {"global_step": checkpoint["global_step"], **checkpoint["state_dict"]}


def assert_close_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


# ---- the data each rank sees -------------------------------------------------------------------


def stream(rank: int, world_size: int, start: int = 0) -> TrainingStream:
    task = CopyTask(delay=2, memory_length=2)
    return TrainingStream(task.sample, 8, 123, 3, rank, world_size, lambda: start)


def test_ranks_split_each_global_batch():
    single = list(stream(0, 1))
    ranks = [list(stream(r, 2)) for r in range(2)]
    for k, (x, y) in enumerate(single):
        (x0, y0), (x1, y1) = ranks[0][k], ranks[1][k]
        assert x0.shape[0] == x1.shape[0] == 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert not torch.equal(x0, x1)  # different examples on every rank


def test_stream_continues_from_batches_drawn():
    resumed = list(stream(1, 2, start=2))
    assert torch.equal(resumed[0][0], list(stream(1, 2))[2][0])
    assert len(resumed) == 3


def fake_trainer(rank: int, world_size: int) -> SimpleNamespace:
    return SimpleNamespace(global_rank=rank, world_size=world_size)


def test_validation_split_covers_every_example_once():
    task = CopyTask(**COPY)
    task.setup()
    seen = []
    for rank in range(2):
        task.trainer = fake_trainer(rank, 2)
        seen += [x for x, _ in task.val_dataloader()]
    assert torch.equal(torch.cat(seen).sum(0), task.val_set.tensors[0].sum(0))
    assert sum(len(x) for x in seen) == 9  # 5 + 4, no padding duplicates


def test_val_set_smaller_than_world_size_is_an_error():
    task = CopyTask(**{**COPY, "val_size": 1})
    task.setup()
    task.trainer = fake_trainer(0, 2)
    with pytest.raises(ValueError, match="val_size 1 is smaller than the 2 processes"):
        task.val_dataloader()


def test_batch_must_split_over_processes():
    assert per_device_batch_size(12, fake_trainer(0, 4)) == 3
    with pytest.raises(ValueError, match="batch_size 6 .* 4 processes"):
        split_batch(6, 4)


@pytest.mark.filterwarnings("ignore:LightningCLI's args")
def test_cli_rejects_batch_not_divisible_before_starting(tmp_path):
    args = [*TINY, "--data.batch_size=6", "--trainer.default_root_dir", str(tmp_path)]
    args += DDP[:2] + ["--trainer.devices", "4", "--trainer.strategy", "ddp"]
    with pytest.raises(ValueError, match="batch_size 6 is the global batch .* 4 processes"):
        main(["fit", *args])


@pytest.mark.parametrize(
    "devices, wanted", [(2, 2), ("3", 3), ("0,1", 2), ([3], 4), (-1, 0), ("-1", 0), ("auto", 0)]
)
def test_requested_gpus(devices, wanted):
    assert requested_gpus(devices) == wanted


@pytest.mark.filterwarnings("ignore:LightningCLI's args")
def test_cli_rejects_more_gpus_than_exist(tmp_path):
    wanted = torch.cuda.device_count() + 1
    args = [*TINY, "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.accelerator", "gpu", "--trainer.devices", str(wanted)]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: trainer.devices='{wanted}' needs {wanted} GPU(s) but ")
    assert f"this machine shows {wanted - 1} " in message and "\n" not in message
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ---- DDP runs (two processes, gloo) ------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One step under DDP and on one process; both resumed on the other world size to step 3
    (the first resume is mid-epoch); and three uninterrupted steps on one process."""
    root = tmp_path_factory.mktemp("ddp")
    paths = {name: root / name for name in ("ddp", "one", "ddp_then_one", "one_then_ddp", "ref")}
    fit(paths["ddp"], *DDP)
    fit(paths["one"])
    fit(
        paths["ddp_then_one"],
        "--trainer.max_steps=3",
        "--ckpt_path",
        str(paths["ddp"] / "checkpoints/last.ckpt"),
    )
    fit(
        paths["one_then_ddp"],
        *DDP,
        "--trainer.max_steps=3",
        "--ckpt_path",
        str(paths["one"] / "checkpoints/last.ckpt"),
    )
    fit(paths["ref"], "--trainer.max_steps=3")
    return paths


@pytest.mark.slow
def test_ddp_step_equals_one_process_step(runs):
    ddp, one = weights(runs["ddp"]), weights(runs["one"])
    assert ddp["global_step"] == one["global_step"] == 1
    assert_close_weights(ddp, one)


@pytest.mark.slow
def test_ddp_logged_train_loss_is_the_global_batch_loss(runs):
    ddp, one = (logged(runs[name], "train/loss")["train/loss"] for name in ("ddp", "one"))
    assert float(ddp) == pytest.approx(float(one), rel=1e-6)


def logged(root: Path, metric: str) -> dict:
    """The last row of a run's metrics.csv that holds `metric`."""
    with open(root / "metrics.csv") as file:
        return [row for row in csv.DictReader(file) if row.get(metric)][-1]


@pytest.mark.slow
def test_ddp_logged_val_metrics_are_over_the_whole_val_set(runs):
    logged_row = logged(runs["ddp"], "val/loss")
    task = load_task(runs["ddp"] / "checkpoints/last.ckpt").eval()
    data = CopyTask(**COPY)
    data.setup()
    x, y = data.val_set.tensors
    with torch.no_grad():
        prediction = task(x)
    loss = task.loss(prediction, y).item()
    acc = MulticlassAccuracy(10, average="micro")(prediction.flatten(0, 1), y.flatten()).item()
    assert float(logged_row["val/loss"]) == pytest.approx(loss, rel=1e-6)
    assert float(logged_row["val/acc"]) == pytest.approx(acc, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("resumed", ["ddp_then_one", "one_then_ddp"])
def test_checkpoint_resumes_on_another_world_size(runs, resumed):
    result, reference = weights(runs[resumed]), weights(runs["ref"])
    assert result["global_step"] == reference["global_step"] == 3
    assert_close_weights(result, reference)
