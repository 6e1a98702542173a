"""Noisy sequential CIFAR10 (nsCIFAR10): 32 image rows of 96 values, then Gaussian noise."""

import pickle
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

from ..nn.options import check_choice
from .location import DataCorruptError, fetch, require_files, resolve_data_dir
from .sequences import LabelledSequences, SequenceDataModule
from .synthetic import mix_seed

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_FILES = tuple(name for name, _ in CIFAR10.train_list + CIFAR10.test_list) + (
    CIFAR10.meta["filename"],
)
CIFAR10_HOW_TO_FETCH = (
    f"They are torchvision's CIFAR10 files: the python version, {CIFAR10.url}, unpacked. "
    "Fetch them with --data.init_args.download true on a machine with internet access."
)
NOISE_MODES = ("fixed", "per_sample")
EVAL_STREAMS = {"val": 1, "test": 2}


class CIFAR10Files(CIFAR10):
    """torchvision's CIFAR10 reader; verify_md5=False keeps its checks that the files exist but
    skips their md5 sums (for files written in the same format, as the tests do)."""

    def __init__(self, root: str, train: bool, download: bool = False, verify_md5: bool = True):
        if not verify_md5:
            self.train_list = [[name, None] for name, _ in CIFAR10.train_list]
            self.test_list = [[name, None] for name, _ in CIFAR10.test_list]
            self.meta = {**CIFAR10.meta, "md5": None}
        super().__init__(root, train=train, download=download)


def failed_md5(folder: Path) -> list[str]:
    """Names of the CIFAR10 files in `folder` whose md5 sum is not torchvision's."""
    meta = [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    files = CIFAR10.train_list + CIFAR10.test_list + meta
    return [name for name, md5 in files if not check_integrity(str(folder / name), md5)]


def read_cifar10(root: Path, train: bool, verify_md5: bool) -> tuple[Tensor, Tensor]:
    """(images (N, 32, 32, 3) uint8, labels (N,)) of one split, read by torchvision's CIFAR10."""
    folder = root / CIFAR10.base_folder
    split = "training" if train else "test"
    try:
        data = CIFAR10Files(str(root), train=train, verify_md5=verify_md5)
    except RuntimeError as error:
        bad = failed_md5(folder) if verify_md5 else []
        if not bad:
            raise DataCorruptError(f"CIFAR10: cannot read {folder}: {error}") from error
        raise DataCorruptError(
            f"CIFAR10: {', '.join(bad)} in {folder} failed the md5 check (corrupt or partial "
            "files); delete them and fetch them again"
        ) from error
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise DataCorruptError(
            f"CIFAR10: the {split} files in {folder} cannot be read as CIFAR10 python batches "
            f"({type(error).__name__}: {error}); delete them and fetch them again"
        ) from error
    labels = torch.tensor(data.targets, dtype=torch.long)
    if len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
        raise DataCorruptError(f"CIFAR10: the {split} labels in {folder} are empty or not 0..9")
    return torch.from_numpy(data.data), labels


class RowsThenNoise:
    """A (32, 32, 3) uint8 image as 32 steps of one row (96 values: the row's 32 red, then
    green, then blue pixels), followed by `noise_steps` steps of Gaussian noise.

    noise: a fixed (noise_steps, 96) tensor shared by every image; else None and each call
    draws noise, fresh from the global generator when eval_seed is None (training), or from a
    generator seeded by (eval_seed, index) so validation and test see the same noise every time.
    """

    def __init__(
        self,
        normalize: bool,
        noise_steps: int,
        noise_std: float,
        noise: Tensor | None,
        eval_seed: int | None,
    ) -> None:
        self.normalize, self.noise_steps, self.noise_std = normalize, noise_steps, noise_std
        self.noise, self.eval_seed = noise, eval_seed

    def __call__(self, image: Tensor, index: int) -> Tensor:
        pixels = image.float() / 255
        if self.normalize:
            pixels = (pixels - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
        rows = pixels.permute(0, 2, 1).reshape(32, 96)
        return torch.cat([rows, self.noise_for(index)])

    def noise_for(self, index: int) -> Tensor:
        if self.noise is not None:
            return self.noise
        generator = None
        if self.eval_seed is not None:
            generator = torch.Generator().manual_seed(mix_seed(self.eval_seed, index))
        return torch.randn(self.noise_steps, 96, generator=generator) * self.noise_std


class NoisySequentialCIFAR10(SequenceDataModule):
    """nsCIFAR10: 32 rows of 96 values then noise_steps (968) noise steps, length 1000.

    noise="fixed" (the paper's protocol): one noise tensor per run, drawn from noise_seed and
    appended to every image of every split. noise="per_sample": training images get fresh
    noise each time they are drawn; validation and test noise is fixed per image by noise_seed.
    The 50k training images are split 47k / 3k (val_size) by split_seed; test is the 10k set.
    normalize=False feeds pixels in [0, 1] as the paper's code does; True standardises each
    colour. verify_md5=False skips torchvision's md5 check of the files (never for real runs).
    Files live in <data_dir>/cifar-10-batches-py/ in torchvision's layout.
    """

    input_size = 96
    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        noise: str = "fixed",
        noise_seed: int = 0,
        noise_std: float = 1.0,
        noise_steps: int = 968,
        normalize: bool = False,
        verify_md5: bool = True,
        batch_size: int = 256,
        val_size: int = 3000,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, val_size, split_seed, num_workers, pin_memory)
        self.data_dir = resolve_data_dir(data_dir)
        self.download = download
        self.noise = check_choice("noise", noise, NOISE_MODES)
        if noise_steps < 0:
            raise ValueError(f"noise_steps must be >= 0, got {noise_steps}")
        self.noise_seed, self.noise_std, self.noise_steps = noise_seed, noise_std, noise_steps
        self.normalize, self.verify_md5 = normalize, verify_md5
        self.seq_len = 32 + noise_steps

    def fixed_noise(self) -> Tensor:
        """The run's one noise tensor (noise_steps, 96), a function of noise_seed alone."""
        generator = torch.Generator().manual_seed(self.noise_seed)
        return torch.randn(self.noise_steps, 96, generator=generator) * self.noise_std

    def prepare_data(self) -> None:
        if self.download:
            root = str(self.data_dir)
            fetch("CIFAR10", self.data_dir, lambda: CIFAR10(root, train=True, download=True))

    def require_data(self) -> None:
        folder = self.data_dir / CIFAR10.base_folder
        require_files("CIFAR10", folder, CIFAR10_FILES, CIFAR10_HOW_TO_FETCH)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.require_data()
        train = read_cifar10(self.data_dir, train=True, verify_md5=self.verify_md5)
        return (*train, *read_cifar10(self.data_dir, train=False, verify_md5=self.verify_md5))

    def sequences(self, inputs: Tensor, labels: Tensor, stage: str) -> Dataset:
        fixed = self.noise == "fixed"
        eval_seed = None if stage == "train" else mix_seed(self.noise_seed, EVAL_STREAMS[stage])
        to_sequence = RowsThenNoise(
            self.normalize,
            self.noise_steps,
            self.noise_std,
            self.fixed_noise() if fixed else None,
            None if fixed else eval_seed,
        )
        return LabelledSequences(inputs, labels, to_sequence)
