"""LightningDataModules: synthetic memory tasks and sequential images."""

from .synthetic import AddingTask, CopyTask, SyntheticTask

__all__ = ["AddingTask", "CopyTask", "SyntheticTask"]
