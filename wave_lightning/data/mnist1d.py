"""MNIST-1D (Greydanus & Kobak): 10 classes of length-40 signals, generated locally, no download."""

import random
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .sequences import LabelledSequences, SequenceDataModule


def as_steps(signal: Tensor, index: int) -> Tensor:
    """A length-T signal as T steps of one value."""
    return signal.unsqueeze(-1)


@lru_cache(maxsize=4)
def generate_mnist1d(seed: int = 42, shuffle_time: bool = False) -> tuple[Tensor, ...]:
    """(x, y, x_test, y_test) from the mnist1d package's own generator: 4000 / 1000 examples.

    Calls `mnist1d.data.make_dataset` only (never `get_dataset`, which may download); the
    global `random` and numpy states it reseeds are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.shuffle_seq = seed, shuffle_time
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return (
        torch.tensor(data["x"], dtype=torch.float32),
        torch.tensor(data["y"], dtype=torch.long),
        torch.tensor(data["x_test"], dtype=torch.float32),
        torch.tensor(data["y_test"], dtype=torch.long),
    )


class MNIST1D(SequenceDataModule):
    """MNIST-1D as 40 steps of one value; 4000 training examples (val_size of them held out
    for validation by split_seed) and the 1000 test examples.

    data_seed is the generator's seed (the package's default 42 gives the published data set);
    shuffle_time applies the package's fixed shuffle of the 40 time steps to every signal.
    """

    input_size = 1
    seq_len = 40
    num_classes = 10

    def __init__(
        self,
        data_seed: int = 42,
        shuffle_time: bool = False,
        batch_size: int = 100,
        val_size: int = 400,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, val_size, split_seed, num_workers, pin_memory)
        self.data_seed, self.shuffle_time = data_seed, shuffle_time

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return generate_mnist1d(self.data_seed, self.shuffle_time)

    def sequences(self, inputs: Tensor, labels: Tensor, stage: str) -> Dataset:
        return LabelledSequences(inputs, labels, as_steps)
