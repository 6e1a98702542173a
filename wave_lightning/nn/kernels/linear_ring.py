"""The linear wave ring h_t = U h_{t-1} + d_t as a state-space model, computed in parallel.

U is a circular convolution over each ring of N units with C channels, so it is
block-circulant and the ring's discrete Fourier transform splits it into N independent C x C
blocks M_f (`ring_blocks`). Per ring frequency the recurrence is then a linear time-invariant
system whose states are a causal convolution over time of the drive with the powers M_f^k.
The powers are matrix products (`block_powers`, by doubling: log2 T batched matmuls), not an
eigendecomposition: shift and identity inits give M_f = lambda I, where the eigenvectors'
gradient is undefined, and random kernels may give defective or ill-conditioned blocks; plain
products are exact to round-off, in values and gradients, for every kernel.
The convolution over time runs by FFT (`block_causal_convolution`).
"""

import math

import torch
from torch import Tensor


def ring_blocks(taps: Tensor, n_hid: int) -> Tensor:
    """The blocks M_f (N, C_out, C_in), complex, of a circular convolution with taps (K, C, C)
    (Conv1d's weight with circular padding K//2, taps first) over rings of n_hid units: for a
    state's ring DFT h_f = sum_i h_i exp(-2 pi i f i / N), (U h)_f = M_f h_f."""
    kernel_size = taps.shape[0]
    offsets = torch.arange(kernel_size, device=taps.device) - kernel_size // 2
    turns = torch.arange(n_hid, device=taps.device)[:, None] * offsets % n_hid  # exact integers
    angles = (2 * math.pi / n_hid) * turns.to(taps.dtype)
    phases = torch.polar(torch.ones_like(angles), angles)  # (N, K)
    return torch.einsum("fk,koc->foc", phases, taps.to(phases.dtype))


def block_powers(blocks: Tensor, length: int) -> Tensor:
    """M^k for k = 0..length-1, as (length, *blocks.shape), of square blocks (..., C, C):
    doubling, so each power is a product of at most log2(length) + 1 matrices."""
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    powers, step = eye.expand_as(blocks)[None], blocks
    while powers.shape[0] < length:
        powers = torch.cat([powers, powers @ step])  # M^k M^n = M^(k+n), for n = len(powers)
        step = step @ step
    return powers[:length]


def block_causal_convolution(kernel: Tensor, signal: Tensor) -> Tensor:
    """y_t = sum_{k <= t} kernel_k @ signal_{t-k} by FFT of length 2T (no wrap-around), as
    diagonal.causal_convolution with a matrix product per frequency. kernel (T, F, C, C),
    signal (B, T, C, F), both complex; returns (B, T, C, F)."""
    steps = signal.shape[1]
    kernel_hat = torch.fft.fft(kernel, n=2 * steps, dim=0)
    signal_hat = torch.fft.fft(signal, n=2 * steps, dim=1)
    product = torch.einsum("tfoc,btcf->btof", kernel_hat, signal_hat)
    return torch.fft.ifft(product, dim=1)[:, :steps]


def linear_ring_recurrence(drive: Tensor, h0: Tensor, taps: Tensor) -> Tensor:
    """States h_1..h_T (B, T, C N) of h_t = U h_{t-1} + d_t, U the circular convolution with
    taps (K, C, C), for a real drive (B, T, C N) and h0 (B, C N), stored ring by ring.

    h0 enters as the extra drive U h0 at the first step. Real states need only the ring
    frequencies 0..N/2 (rfft); the others are their complex conjugates. The powers are taken
    in float64 whatever the drive's precision: the rounding d of an eigenvalue grows to k d in
    its k-th power, so float32 powers would drift by T times float32's round-off.
    """
    batch, steps, _ = drive.shape
    n_ch = taps.shape[1]
    n_hid = drive.shape[-1] // n_ch
    blocks = ring_blocks(taps.double(), n_hid)[: n_hid // 2 + 1]  # (F, C, C)
    signal = torch.fft.rfft(drive.view(batch, steps, n_ch, n_hid), dim=-1)  # (B, T, C, F)
    start = torch.fft.rfft(h0.view(batch, n_ch, n_hid), dim=-1)
    first = signal[:, 0] + torch.einsum("foc,bcf->bof", blocks.to(start.dtype), start)
    signal = torch.cat([first[:, None], signal[:, 1:]], dim=1)
    powers = block_powers(blocks, steps).to(signal.dtype)
    states = block_causal_convolution(powers, signal)
    return torch.fft.irfft(states, n=n_hid, dim=-1).reshape(drive.shape)
