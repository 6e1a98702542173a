"""The paper's synthetic memory tasks, generated in torch: copy and adding.

Training batches form one stream: global batch k (counted over the whole run, across epochs) is
drawn whole from a generator seeded by (train seed, k), and each of the W processes of a
distributed run trains on its own slice of it (rank r takes rows r*B/W .. (r+1)*B/W). So every rank
sees different examples, the union over ranks is the batch one process would draw, a run on W
devices trains on exactly the data of a run on one, and a resumed run (even mid-epoch) continues
with the batch it was about to draw. Validation and test sets are fixed by the data seed, identical
on every rank, and split across ranks without padding, so metrics reduced across ranks cover every
example exactly once.
"""

import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Generator, Tensor
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from ..nn.options import check_choice, check_positive
from .batching import evaluation_sampler, per_device_batch_size, process_count, split_batch

# Lightning warns about every IterableDataset with a length, for multi-worker loading; the stream
# is loaded in the main process and its length is exact.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")

DrawExamples = Callable[[int, Generator], tuple[Tensor, Tensor]]


def mix_seed(seed: int, index: int) -> int:
    """A generator seed for item `index` of a stream seeded by `seed` (splitmix-style)."""
    x = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class TrainingStream(IterableDataset):
    """One epoch of training batches for one process: global batches `start() .. start() + len - 1`
    of the stream, each cut to this rank's slice.

    `start` is read when an epoch's iterator is created, so a resumed run starts at the batch the
    interrupted one was about to train on. An IterableDataset, so Lightning does not shard it by
    index: the ranks split every global batch instead.
    """

    def __init__(
        self,
        sample: DrawExamples,
        batch_size: int,
        seed: int,
        num_batches: int,
        rank: int = 0,
        world_size: int = 1,
        start: Callable[[], int] = lambda: 0,
    ) -> None:
        self.sample, self.batch_size, self.seed = sample, batch_size, seed
        self.num_batches, self.start = num_batches, start
        self.rows = slice_of_rank(batch_size, rank, world_size)

    def global_batch(self, index: int) -> tuple[Tensor, Tensor]:
        """Global batch `index` of the stream, the same on every rank."""
        return self.sample(self.batch_size, Generator().manual_seed(mix_seed(self.seed, index)))

    def rank_batch(self, index: int) -> tuple[Tensor, Tensor]:
        """This rank's rows of global batch `index`."""
        x, y = self.global_batch(index)
        return x[self.rows], y[self.rows]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        first = self.start()
        return map(self.rank_batch, range(first, first + self.num_batches))

    def __len__(self) -> int:
        return self.num_batches


def slice_of_rank(batch_size: int, rank: int, world_size: int) -> slice:
    """Rows of a global batch that process `rank` of `world_size` trains on."""
    size = split_batch(batch_size, world_size)
    return slice(rank * size, (rank + 1) * size)


class SyntheticTask(LightningDataModule):
    """Base of generated tasks: a seeded stream of training batches, fixed validation and test sets.

    batch_size is global: each of the W processes of a distributed run trains on batch_size / W
    rows of every batch. train_seed None takes the training seed (the one `seed_everything` set),
    so the stream is recorded with the run; data_seed fixes the validation and test sets on every
    machine.
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

    def batches_drawn(self) -> int:
        """Training batches this run has drawn so far (restored with the loops on resume)."""
        return self.trainer.fit_loop.total_batch_idx + 1 if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        stream = TrainingStream(
            self.sample,
            self.batch_size,
            self.train_seed,
            self.train_batches,
            rank,
            process_count(self.trainer),
            self.batches_drawn,
        )
        return DataLoader(stream, batch_size=None)

    def evaluation_loader(self, dataset: TensorDataset, name: str) -> DataLoader:
        """The whole set, split over the processes without padding (none is counted twice)."""
        sampler = evaluation_sampler(dataset, self.trainer, name)
        return DataLoader(dataset, batch_size=self.device_batch_size(), sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_loader(self.val_set, "val_size")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader(self.test_set, "test_size")

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


COPY_LAYOUTS = ("paper", "authors")


class CopyTask(SyntheticTask):
    """Copy: recall `memory_length` symbols from 1..8 after a delay; inputs one-hot over 10
    classes, the target blank (0) except at the recall steps, which repeat the symbols.

    layout="paper" (the paper's text): the symbols, `delay` blanks, the delimiter 9, then
    memory_length - 1 blanks; length delay + 2 * memory_length, recall in the last memory_length
    steps (the first of them the delimiter's step).
    layout="authors" (the authors' script): `delay` is the script's T and the length is
    T + memory_length: the symbols at 0 .. m-1, blanks, the delimiter 9 at position L - m - 1,
    then m blanks while the symbols are recalled at L - m .. L - 1. At T = m the delimiter
    overwrites the last symbol (the target still holds it), so T >= m is required.
    """

    input_size = output_size = num_classes = 10

    def __init__(
        self, delay: int = 30, memory_length: int = 10, layout: str = "paper", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.memory_length = check_positive("memory_length", memory_length)
        self.layout = check_choice("layout", layout, COPY_LAYOUTS)
        low = memory_length if layout == "authors" else 0
        if delay < low:
            raise ValueError(f"delay must be >= {low} with layout={layout!r}, got {delay}")
        self.delay = delay
        extra = memory_length if layout == "authors" else 2 * memory_length
        self.seq_len = delay + extra

    def delimiter_position(self) -> int:
        """Where the delimiter 9 stands in the input sequence."""
        m = self.memory_length
        return self.seq_len - m - 1 if self.layout == "authors" else m + self.delay

    def sample(self, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
        m = self.memory_length
        symbols = torch.randint(1, 9, (n, m), generator=generator)
        sequence = torch.zeros(n, self.seq_len, dtype=torch.long)
        sequence[:, :m] = symbols
        sequence[:, self.delimiter_position()] = 9
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
