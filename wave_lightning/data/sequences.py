"""Labelled sequence data sets held in memory: a seeded train/val split and the DataLoaders.

The sequential image tasks and MNIST-1D share this base; each subclass loads its raw arrays
(`load`) and says how one raw example becomes a sequence of shape (seq_len, input_size).
"""

from collections.abc import Callable

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..nn.options import check_positive
from .batching import evaluation_sampler, per_device_batch_size

ToSequence = Callable[[Tensor, int], Tensor]


class LabelledSequences(Dataset):
    """Item i is (to_sequence(inputs[i], i), labels[i]); inputs stay in their compact raw form."""

    def __init__(self, inputs: Tensor, labels: Tensor, to_sequence: ToSequence) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels, self.to_sequence = inputs, labels, to_sequence

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.to_sequence(self.inputs[index], index), self.labels[index]


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted (train, val) indices of n examples; val is a random subset fixed by `seed`."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1} (the training set has {n})")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


class SequenceDataModule(LightningDataModule):
    """A classification data set split into train / val (seeded by split_seed) / test.

    batch_size is global: under DDP each process loads batch_size / world_size examples.
    """

    input_size: int
    seq_len: int
    num_classes: int

    def __init__(
        self,
        batch_size: int = 128,
        val_size: int = 3000,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = check_positive("batch_size", batch_size)
        self.val_size = check_positive("val_size", val_size)
        self.split_seed = split_seed
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def output_size(self) -> int:
        return self.num_classes

    def require_data(self) -> None:
        """Raise DataMissingError unless the raw files are in place (a data set made in memory,
        like MNIST-1D, needs none); the CLI calls it before anything is written."""

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Raw (train inputs, train labels, test inputs, test labels), before the val split."""
        raise NotImplementedError

    def sequences(self, inputs: Tensor, labels: Tensor, stage: str) -> Dataset:
        """The data set of stage ("train", "val" or "test") over these raw examples."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        inputs, labels, test_inputs, test_labels = self.load()
        train, val = split_indices(len(labels), self.val_size, self.split_seed)
        self.train_set = self.sequences(inputs[train], labels[train], "train")
        self.val_set = self.sequences(inputs[val], labels[val], "val")
        self.test_set = self.sequences(test_inputs, test_labels, "test")

    def loader(self, data: Dataset, shuffle: bool, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            data,
            batch_size=per_device_batch_size(self.batch_size, self.trainer),
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, shuffle=True)

    def evaluation_loader(self, data: Dataset, name: str) -> DataLoader:
        """The whole set, split over the processes without padding (none is counted twice)."""
        return self.loader(data, False, evaluation_sampler(data, self.trainer, name))

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_loader(self.val_set, "val_size")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader(self.test_set, "test set")

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
