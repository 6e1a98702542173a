"""The spectrum of a wave ring's linear part: eigenvalues per ring frequency and their speeds.

A WaveRNN's recurrent weights U are a circular convolution over each ring, so the ring's DFT
splits U into one C x C block per ring frequency f (nn/kernels/linear_ring.py). The block's
eigenvalues are U's: their modulus is the decay per step of a pattern at frequency f (1: kept
forever), their phase how far it turns per step, hence how fast it travels. This is the
spectrum of the linear part only: with the identity activation it is the whole recurrence's;
a ReLU or tanh ring departs from it wherever the activation bends its states. An untied ring
(LocalRNN) is not circulant, so the DFT does not split it and it has no such spectrum.
"""

import math

import torch
from torch import Tensor

from ..nn import WaveRNN
from ..nn.kernels.linear_ring import ring_blocks


def ring_spectrum(layer: WaveRNN) -> Tensor:
    """Eigenvalues (N, C), complex128, of the recurrent weights' block at each ring frequency
    f = 0..N-1: a pattern exp(2 pi i f j / N) along the ring is multiplied by them per step."""
    if not isinstance(layer, WaveRNN):
        raise ValueError(
            f"layer must be a WaveRNN (tied ring weights, circulant), got {type(layer).__name__}"
        )
    taps = layer.taps().detach().to("cpu", torch.float64)
    return torch.linalg.eigvals(ring_blocks(taps, layer.n_hid))


def wave_speeds(eigenvalues: Tensor) -> Tensor:
    """Units per step (N, C) that each eigenmode of `ring_spectrum` travels up the ring,
    -phase N / (2 pi f) for the ring frequency f taken in [-N/2, N/2); NaN at f = 0, where
    nothing moves. A speed is known modulo N / |f| (the phase modulo 2 pi)."""
    n_hid = eigenvalues.shape[0]
    frequencies = torch.arange(n_hid, dtype=torch.float64)
    signed = torch.where(frequencies >= n_hid / 2, frequencies - n_hid, frequencies)
    speeds = -eigenvalues.angle().double() * n_hid / (2 * math.pi * signed[:, None])
    speeds[0] = math.nan
    return speeds
