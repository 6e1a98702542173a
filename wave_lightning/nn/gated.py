"""LSTM and GRU baselines: torch's fused modules behind the layers' common signature."""

import torch
from torch import Tensor, nn

from .options import check_positive, check_sequence, check_state


class _TorchRNN(nn.Module):
    """Wraps a batch-first torch RNN so that forward returns (output, h_n of shape (B, H))."""

    rnn_class: type[nn.RNNBase]

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)
        self.rnn = self.rnn_class(input_size, hidden_size, batch_first=True)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_sequence(x, self.input_size)
        if h0 is not None:
            check_state(h0, x.shape[0], self.hidden_size)
            h0 = self.initial_state(h0.unsqueeze(0))
        output, _ = self.rnn(x, h0)
        return output, output[:, -1]

    def initial_state(self, h0: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return h0


class GRU(_TorchRNN):
    """torch.nn.GRU, batch first."""

    rnn_class = nn.GRU


class LSTM(_TorchRNN):
    """torch.nn.LSTM, batch first; h0 sets the hidden state, the cell state starts at zero."""

    rnn_class = nn.LSTM

    def initial_state(self, h0: Tensor) -> tuple[Tensor, Tensor]:
        return h0, torch.zeros_like(h0)
