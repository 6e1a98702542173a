"""Recurrent layers in pure PyTorch: `output, h_n = layer(x, h0=None)`, batch first."""

from .dense import IRNN
from .gated import GRU, LSTM
from .local import LocalRNN
from .oscillators import LEM, CoRNN
from .sheet import WaveSheetRNN
from .state_space import LRU, S4D
from .wave import WaveRNN

__all__ = [
    "CoRNN",
    "GRU",
    "IRNN",
    "LEM",
    "LRU",
    "LSTM",
    "LocalRNN",
    "S4D",
    "WaveRNN",
    "WaveSheetRNN",
]
