"""Test-only components reachable by class_path from configs: crashes and poisoned data."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

from wave_lightning.data import AddingTask

ROOT = Path(__file__).resolve().parents[1]


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`wave-lightning fit ARGS` in a child process of this checkout, one thread, output kept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "wave_lightning", "fit", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def path_with_fake(directory: Path, name: str, script: str) -> str:
    """PATH with an executable shell `script` named `name` in `directory` found first (a stand-in
    for a real command: srun, scontrol, another ninja)."""
    fake = directory / name
    fake.write_text(script)
    fake.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


def tiny_copy_args(**data: object) -> list[str]:
    """`fit` arguments of a copy-task run with a tiny wRNN (2 rings of 8 units); `data` sets
    CopyTask's arguments (--data.KEY=VALUE)."""
    return [
        "--config", str(ROOT / "conf/data/copy.yaml"),
        "--config", str(ROOT / "conf/model/wrnn.yaml"),
        "--model.layer.init_args.n_hid", "8",
        "--model.layer.init_args.n_ch", "2",
        *[f"--data.{key}={value}" for key, value in data.items()],
    ]  # fmt: skip


class KillAtEpoch(Callback):
    """SIGKILLs its own process when epoch `epoch` starts: a crash with no chance to clean up."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class NaNAddingTask(AddingTask):
    """The adding task whose training inputs turn to NaN at global batch `nan_from_batch`."""

    def __init__(self, nan_from_batch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_from_batch = nan_from_batch

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        stream = loader.dataset
        clean = stream.rank_batch

        def poisoned(index: int):
            x, y = clean(index)
            return (x * float("nan"), y) if index >= self.nan_from_batch else (x, y)

        stream.rank_batch = poisoned
        return loader
