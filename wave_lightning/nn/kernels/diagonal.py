"""The diagonal complex linear recurrence h_t = lam * h_{t-1} + d_t, h_0 = 0, over time.

Its parallel form is a causal convolution of the drive with the modes' impulse responses
lam^k, computed by FFT with no wrap-around. The eigenvalues come as their logarithms,
lam = exp(log_lam): the state-space layers are parametrised by them (S4D's dt * A, the LRU's
-nu + i theta), and the powers lam^k = exp(k log_lam) are then exact to round-off with no
product accumulated over time. `diagonal_recurrence_reference` is the per-step form the
parallel one is tested against (values and gradients).
"""

import torch
from torch import Tensor


def mode_powers(log_lam: Tensor, length: int) -> Tensor:
    """lam^k for k = 0..length-1, as (length, *log_lam.shape): each mode's impulse response."""
    steps = torch.arange(length, dtype=log_lam.real.dtype, device=log_lam.device)
    return torch.exp(steps.view(-1, *([1] * log_lam.dim())) * log_lam)


def causal_convolution(kernel: Tensor, signal: Tensor) -> Tensor:
    """y_t = sum_{k <= t} kernel_k * signal_{t-k} along time, by FFT of length 2T (no
    wrap-around). kernel: (T, *K), signal: (B, T, *S), K broadcast against S (aligned from the
    right, K no longer than S); real if both are real, else complex. Returns (B, T, *S)."""
    steps = signal.shape[1]
    if kernel.shape[0] != steps or kernel.dim() > signal.dim() - 1:
        raise ValueError(
            f"kernel of shape {tuple(kernel.shape)} does not fit signal {tuple(signal.shape)}"
        )
    extra = signal.dim() - 1 - kernel.dim()  # align the trailing dims, not time with a channel
    kernel = kernel.reshape(steps, *[1] * extra, *kernel.shape[1:])
    if kernel.is_complex() or signal.is_complex():
        fft, ifft = torch.fft.fft, torch.fft.ifft
    else:
        fft, ifft = torch.fft.rfft, torch.fft.irfft
    product = fft(kernel, n=2 * steps, dim=0) * fft(signal, n=2 * steps, dim=1)
    return ifft(product, n=2 * steps, dim=1)[:, :steps]


def diagonal_recurrence(log_lam: Tensor, drive: Tensor) -> Tensor:
    """States h_1..h_T of h_t = exp(log_lam) * h_{t-1} + drive_t from h_0 = 0, in parallel.

    log_lam: complex (*L, N); drive: (B, T, *D, N) with (*L, N) broadcast against (*D, N), no
    longer than it. Returns complex (B, T, *D, N).
    """
    return causal_convolution(mode_powers(log_lam, drive.shape[1]), drive)


def diagonal_recurrence_reference(log_lam: Tensor, drive: Tensor) -> Tensor:
    """The same states step by step: the reference `diagonal_recurrence` is tested against."""
    lam = torch.exp(log_lam)
    h, states = torch.zeros((), dtype=lam.dtype, device=lam.device), []
    for d_t in drive.unbind(1):  # unbind, not drive[:, t]: indexing makes the backward O(T^2)
        h = lam * h + d_t
        states.append(h)
    return torch.stack(states, dim=1)
