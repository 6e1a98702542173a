"""Test-only components reachable by class_path from configs: crashes and poisoned data."""

import os
import signal

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset

from wave_lightning.data import AddingTask


class KillAtEpoch(Callback):
    """SIGKILLs its own process when epoch `epoch` starts: a crash with no chance to clean up."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class Poisoned(Dataset):
    """Batches of `inner`, with NaN inputs from global batch index `start` on."""

    def __init__(self, inner: Dataset, start: int) -> None:
        self.inner, self.start = inner, start

    def __getitem__(self, index: int):
        x, y = self.inner[index]
        return (x * float("nan"), y) if index >= self.start else (x, y)


class NaNAddingTask(AddingTask):
    """The adding task whose training inputs turn to NaN at global batch `nan_from_batch`."""

    def __init__(self, nan_from_batch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_from_batch = nan_from_batch

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        poisoned = Poisoned(loader.dataset, self.nan_from_batch)
        return DataLoader(poisoned, sampler=loader.sampler, batch_size=None)
