"""Sequence models: a recurrent layer from wave_lightning.nn plus a readout."""

from .sequence import SequenceModel

__all__ = ["SequenceModel"]
