"""LightningDataModules: synthetic memory tasks and sequential images."""

from .cifar import NoisySequentialCIFAR10
from .location import DataCorruptError, DataDownloadError, DataMissingError, default_data_dir
from .mnist import SequentialMNIST, pixel_permutation
from .mnist1d import MNIST1D
from .sequences import SequenceDataModule
from .synthetic import AddingTask, CopyTask, SyntheticTask

__all__ = [
    "MNIST1D",
    "AddingTask",
    "CopyTask",
    "DataCorruptError",
    "DataDownloadError",
    "DataMissingError",
    "NoisySequentialCIFAR10",
    "SequenceDataModule",
    "SequentialMNIST",
    "SyntheticTask",
    "default_data_dir",
    "pixel_permutation",
]
