"""The paper's synthetic memory tasks, generated in torch: copy and adding.

Training batches are a pure function of (train seed, global batch index), drawn fresh for every
step and reproducible after a resume; validation and test sets are fixed by the data seed.
"""

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Generator, Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from ..nn.options import check_positive
from .batching import per_device_batch_size


def mix_seed(seed: int, index: int) -> int:
    """A generator seed for item `index` of a stream seeded by `seed` (splitmix-style)."""
    x = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class BatchIndexSampler(Sampler[int]):
    """Yields the global batch indices of one epoch: epoch * num_batches + 0..num_batches-1."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self):
        # A generator, so the epoch is read at the first batch: after a resume Lightning creates
        # the iterator before it calls set_epoch.
        start = self.epoch * self.num_batches
        yield from range(start, start + self.num_batches)

    def __len__(self) -> int:
        return self.num_batches


class SampledBatches(Dataset):
    """Item k is a whole batch drawn by `task.sample` from a generator seeded by (seed, k)."""

    def __init__(self, task: "SyntheticTask", batch_size: int, seed: int) -> None:
        self.task, self.batch_size, self.seed = task, batch_size, seed

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, index))
        return self.task.sample(self.batch_size, generator)


class SyntheticTask(LightningDataModule):
    """Base of generated tasks: fresh seeded training batches, fixed validation and test sets.

    train_seed None takes the training seed (the one `seed_everything` set), so the stream is
    recorded with the run; data_seed fixes the validation and test sets on every machine.
    """

    input_size: int
    output_size: int
    seq_len: int

    def __init__(
        self,
        batch_size: int = 128,
        train_batches: int = 100,
        val_size: int = 1024,
        test_size: int = 1024,
        data_seed: int = 0,
        train_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = check_positive("batch_size", batch_size)
        self.train_batches = check_positive("train_batches", train_batches)
        self.val_size = check_positive("val_size", val_size)
        self.test_size = check_positive("test_size", test_size)
        self.data_seed = data_seed
        self.train_seed = train_seed
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def sample(self, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
        """n examples (inputs (n, seq_len, input_size), targets) drawn with `generator`."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_seed is None:
            self.train_seed = torch.initial_seed()
        if self.val_set is None:
            generator = torch.Generator().manual_seed(self.data_seed)
            self.val_set = TensorDataset(*self.sample(self.val_size, generator))
            self.test_set = TensorDataset(*self.sample(self.test_size, generator))

    def state_dict(self) -> dict:
        """Saved in checkpoints, so a resumed run draws the same training batches."""
        return {"train_seed": self.train_seed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train_seed = state_dict["train_seed"]

    def device_batch_size(self) -> int:
        return per_device_batch_size(self.batch_size, self.trainer)

    def train_dataloader(self) -> DataLoader:
        batches = SampledBatches(self, self.device_batch_size(), self.train_seed)
        return DataLoader(batches, sampler=BatchIndexSampler(self.train_batches), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.device_batch_size())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.device_batch_size())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class CopyTask(SyntheticTask):
    """Copy: `memory_length` symbols from 1..8, `delay` blanks, the delimiter 9, memory_length-1
    blanks (length delay + 2 * memory_length); the target is blank (0) except for the last
    memory_length steps, which repeat the symbols. Inputs are one-hot over 10 classes."""

    input_size = output_size = num_classes = 10

    def __init__(self, delay: int = 30, memory_length: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.delay = delay
        self.memory_length = check_positive("memory_length", memory_length)
        self.seq_len = delay + 2 * memory_length

    def sample(self, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
        m = self.memory_length
        symbols = torch.randint(1, 9, (n, m), generator=generator)
        sequence = torch.zeros(n, self.seq_len, dtype=torch.long)
        sequence[:, :m] = symbols
        sequence[:, m + self.delay] = 9
        target = torch.zeros_like(sequence)
        target[:, -m:] = symbols
        return F.one_hot(sequence, 10).float(), target


class AddingTask(SyntheticTask):
    """Adding: each step holds (value ~ U[0, 1), marker); one marker falls in the first half and
    one in the second; the target is the sum of the two marked values."""

    input_size = 2
    output_size = 1

    def __init__(self, seq_len: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        self.seq_len = seq_len

    def sample(self, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
        half = self.seq_len // 2
        values = torch.rand(n, self.seq_len, generator=generator)
        first = torch.randint(0, half, (n,), generator=generator)
        second = torch.randint(half, self.seq_len, (n,), generator=generator)
        markers = torch.zeros_like(values)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        target = (values * markers).sum(1, keepdim=True)
        return torch.stack([values, markers], dim=-1), target
