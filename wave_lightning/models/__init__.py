"""Sequence models: a recurrent layer from wave_lightning.nn plus a readout, and deep residual
stacks of such layers."""

from .sequence import SequenceModel
from .stack import ResidualStack

__all__ = ["ResidualStack", "SequenceModel"]
