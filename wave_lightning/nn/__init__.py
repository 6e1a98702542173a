"""Recurrent layers in pure PyTorch: `output, h_n = layer(x, h0=None)`, batch first."""

from .dense import IRNN
from .gated import GRU, LSTM
from .local import LocalRNN
from .oscillators import LEM, CoRNN
from .sheet import WaveSheetRNN
from .wave import WaveRNN

__all__ = ["CoRNN", "GRU", "IRNN", "LEM", "LSTM", "LocalRNN", "WaveRNN", "WaveSheetRNN"]
