"""LightningModules: one per kind of objective, each taking a recurrent layer."""

from .base import NonFiniteLossError, SequenceTask
from .classification import PerStepClassification, SequenceClassification
from .loading import load_task
from .regression import Regression

__all__ = [
    "NonFiniteLossError",
    "PerStepClassification",
    "Regression",
    "SequenceClassification",
    "SequenceTask",
    "load_task",
]
