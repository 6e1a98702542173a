"""Sequential MNIST (sMNIST) and permuted sequential MNIST (psMNIST): 784 steps of one pixel."""

import os
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import MNIST

from .location import DataCorruptError, fetch, require_files, resolve_data_dir
from .sequences import LabelledSequences, SequenceDataModule

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILES = tuple(os.path.splitext(name)[0] for name, _ in MNIST.resources)
MNIST_HOW_TO_FETCH = (
    "They are torchvision's MNIST files: unzipped idx files as published by Yann LeCun "
    f"(mirror {MNIST.mirrors[0]}). Fetch them with --data.init_args.download true on a machine "
    "with internet access."
)


def pixel_permutation(seed: int, length: int = 784) -> Tensor:
    """The psMNIST permutation of `length` positions: a function of `seed` alone (its own
    CPU generator), so every machine and every rank draws the same one."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))


class PixelSequence:
    """A (28, 28) uint8 image as 784 steps of one pixel, row by row, in [0, 1] or standardised,
    then reordered by `permutation` when there is one."""

    def __init__(self, normalize: bool, permutation: Tensor | None) -> None:
        self.normalize, self.permutation = normalize, permutation

    def __call__(self, image: Tensor, index: int) -> Tensor:
        pixels = image.flatten().float() / 255
        if self.normalize:
            pixels = (pixels - MNIST_MEAN) / MNIST_STD
        if self.permutation is not None:
            pixels = pixels[self.permutation]
        return pixels.unsqueeze(-1)


def read_mnist(root: Path, train: bool) -> tuple[Tensor, Tensor]:
    """(images (N, 28, 28) uint8, labels (N,)) of one split, read by torchvision's MNIST."""
    folder = root / "MNIST" / "raw"
    try:
        data = MNIST(str(root), train=train)
        images, labels = data.data, data.targets
    except (AssertionError, RuntimeError, ValueError, TypeError, KeyError) as error:
        raise DataCorruptError(
            f"MNIST: the {'training' if train else 'test'} files in {folder} cannot be read as "
            f"idx files ({type(error).__name__}: {error}); delete them and fetch them again"
        ) from error
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or len(labels) == 0:
        raise DataCorruptError(
            f"MNIST: the {'training' if train else 'test'} files in {folder} hold images of "
            f"shape {tuple(images.shape)} and {len(labels)} labels; expected (N, 28, 28) and N"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataCorruptError(f"MNIST: labels in {folder} fall outside 0..9")
    return images, labels


class SequentialMNIST(SequenceDataModule):
    """sMNIST: each 28x28 digit as 784 steps of one pixel (row-major), 10 classes.

    permute=True gives psMNIST: one fixed permutation of the 784 positions drawn from
    permutation_seed (kept apart from the training seed and saved in every checkpoint).
    The 60k training images are split 57k / 3k (val_size) by split_seed; test is the 10k set.
    normalize=False feeds pixels in [0, 1] as the paper's code does; True standardises them.
    Files live in <data_dir>/MNIST/raw/ in torchvision's layout.
    """

    input_size = 1
    seq_len = 784
    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        permute: bool = False,
        permutation_seed: int = 0,
        normalize: bool = False,
        batch_size: int = 128,
        val_size: int = 3000,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, val_size, split_seed, num_workers, pin_memory)
        self.data_dir = resolve_data_dir(data_dir)
        self.download = download
        self.permute, self.permutation_seed = permute, permutation_seed
        self.normalize = normalize

    @cached_property
    def permutation(self) -> Tensor | None:
        return pixel_permutation(self.permutation_seed, self.seq_len) if self.permute else None

    def prepare_data(self) -> None:
        if self.download:
            fetch("MNIST", self.data_dir, lambda: MNIST(str(self.data_dir), download=True))

    def require_data(self) -> None:
        require_files("MNIST", self.data_dir / "MNIST" / "raw", MNIST_FILES, MNIST_HOW_TO_FETCH)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.require_data()
        return (*read_mnist(self.data_dir, train=True), *read_mnist(self.data_dir, train=False))

    def sequences(self, inputs: Tensor, labels: Tensor, stage: str) -> Dataset:
        return LabelledSequences(inputs, labels, PixelSequence(self.normalize, self.permutation))

    def state_dict(self) -> dict:
        """The permutation itself goes into every checkpoint, beside its seed."""
        return {"permutation_seed": self.permutation_seed, "permutation": self.permutation}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("permutation")
        same = (saved is None) == (self.permutation is None) and (
            saved is None or torch.equal(saved, self.permutation)
        )
        if not same:
            raise ValueError(
                f"the checkpoint was trained with permute={saved is not None} and "
                f"permutation_seed={state_dict.get('permutation_seed')}; this run has "
                f"permute={self.permute} and permutation_seed={self.permutation_seed}"
            )
