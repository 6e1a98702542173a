"""ODE-based baselines: coRNN (Rusch & Mishra 2021) and LEM (Rusch et al. 2022), batch first.

Both integrate a second state z beside the hidden state y; `output, h_n = layer(x, h0)`
returns every y and the last y. h0 sets y_0; z_0 starts at zero (as the LSTM's cell state).
The input projections of all steps are one product before the time loop.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import check_choice, check_positive, check_real, check_sequence, check_state

CORNN_INITS = ("joint", "split")


class _TwoStateRecurrence(nn.Module):
    """What coRNN and LEM share: sizes, checks, the initial states and the stacked output."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)

    def initial_states(self, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor]:
        """(y_0, z_0): h0 (zeros if None) and zeros, once x and h0 are checked."""
        check_sequence(x, self.input_size)
        z0 = x.new_zeros(x.shape[0], self.hidden_size)
        if h0 is None:
            return z0, z0
        check_state(h0, x.shape[0], self.hidden_size)
        return h0, z0

    def drive(self, x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, ...]:
        """The input projection of every step, time major: a tuple of T tensors (B, rows)."""
        return F.linear(x.transpose(0, 1), weight, bias).unbind(0)


class CoRNN(_TwoStateRecurrence):
    """Coupled oscillatory RNN: y'' = tanh(W y + W_z y' + V u + b) - gamma y - epsilon y',
    by the paper's IMEX scheme with step dt (z = y'):

        z_n = z_{n-1} + dt (tanh(W y_{n-1} + W_z z_{n-1} + V u_n + b) - gamma y_{n-1} - eps z_{n-1})
        y_n = y_{n-1} + dt z_n

    Parameters: `input` (V, b), `recurrent_y` (W), `recurrent_z` (W_z), no recurrent bias.
    init "joint": every weight and b uniform in +-1/sqrt(input_size + 2 hidden_size), the one
    nn.Linear over [u, z, y] of the published sMNIST / psMNIST code; "split": each of the three
    maps with nn.Linear's own default (+-1/sqrt(fan_in)), as the published noisy-CIFAR10 code.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dt: float = 0.042,
        gamma: float = 2.7,
        epsilon: float = 4.7,
        init: str = "joint",
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.dt = check_real("dt", dt)
        self.gamma = check_real("gamma", gamma)
        self.epsilon = check_real("epsilon", epsilon)
        self.init = check_choice("init", init, CORNN_INITS)
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent_y = nn.Linear(hidden_size, hidden_size, bias=False)
        self.recurrent_z = nn.Linear(hidden_size, hidden_size, bias=False)
        if init == "joint":
            bound = 1.0 / math.sqrt(input_size + 2 * hidden_size)
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (y of every step (B, T, H), last y (B, H))."""
        y, z = self.initial_states(x, h0)
        w_y, w_z = self.recurrent_y.weight.t(), self.recurrent_z.weight.t()
        dt, damping = self.dt, 1.0 - self.dt * self.epsilon
        ys = []
        for drive in self.drive(x, self.input.weight, self.input.bias):
            force = torch.tanh(torch.addmm(torch.addmm(drive, y, w_y), z, w_z)) - self.gamma * y
            z = damping * z + dt * force
            y = y + dt * z
            ys.append(y)
        return torch.stack(ys, 1), y


class LEM(_TwoStateRecurrence):
    """Long expressive memory: two learned time scales per unit, with step dt in (0, 1]:

        dt_n    = dt sigmoid(W_1 y_{n-1} + V_1 u_n + b_1)
        dtbar_n = dt sigmoid(W_2 y_{n-1} + V_2 u_n + b_2)
        z_n = (1 - dt_n) z_{n-1} + dt_n tanh(W_z y_{n-1} + V_z u_n + b_z)
        y_n = (1 - dtbar_n) y_{n-1} + dtbar_n tanh(W_y z_n + V_y u_n + b_y)

    Parameters as in the published code: `input` (rows V_1, V_2, V_z, V_y, with bias),
    `recurrent` (rows W_1, W_2, W_z, with bias), `recurrent_z` (W_y, with bias); each bias of
    the published code is kept (8 H, the 68k of the paper's count), and every parameter is
    uniform in +-1/sqrt(hidden_size), as there.
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        self.dt = check_real("dt", dt, high=1.0)
        self.input = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, 3 * hidden_size)
        self.recurrent_z = nn.Linear(hidden_size, hidden_size)
        bound = 1.0 / math.sqrt(hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, input_size) -> (y of every step (B, T, H), last y (B, H))."""
        y, z = self.initial_states(x, h0)
        h = self.hidden_size
        bias = self.input.bias + torch.cat([self.recurrent.bias, self.recurrent_z.bias])
        w, w_y = self.recurrent.weight.t(), self.recurrent_z.weight.t()
        ys = []
        for drive in self.drive(x, self.input.weight, bias):
            pre = torch.addmm(drive[:, : 3 * h], y, w)
            steps = self.dt * torch.sigmoid(pre[:, : 2 * h])
            step_z, step_y = steps[:, :h], steps[:, h:]
            z = z + step_z * (torch.tanh(pre[:, 2 * h :]) - z)
            y = y + step_y * (torch.tanh(torch.addmm(drive[:, 3 * h :], z, w_y)) - y)
            ys.append(y)
        return torch.stack(ys, 1), y
