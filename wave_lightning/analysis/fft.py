"""2D FFT power of space-time images, with the frequency axes in cycles per step and per unit."""

import torch
from torch import Tensor

DEFAULT_PAD = 8


def power_spectrum(images: Tensor, pad: int = DEFAULT_PAD) -> Tensor:
    """images (..., T, N) -> power (pad*T, N) summed over the leading dims, in FFT order.

    A Hann window over time limits leakage; zero padding time to pad*T samples the temporal
    frequency finely enough to place a line of fractional slope. Axis 0 is the temporal
    frequency omega = fftfreq(pad*T) cycles/step, axis 1 the wavenumber k = fftfreq(N) cycles/unit.
    """
    if images.dim() < 2 or images.shape[-2] < 2 or images.shape[-1] < 2:
        raise ValueError(
            f"images need at least 2 steps and 2 units, got shape {tuple(images.shape)}"
        )
    if pad < 1:
        raise ValueError(f"pad must be >= 1, got {pad}")
    steps, units = images.shape[-2:]
    window = torch.hann_window(steps, periodic=False, dtype=torch.float64)
    spectrum = torch.fft.fft2(images.double() * window[:, None], s=(pad * steps, units))
    return (spectrum.abs() ** 2).reshape(-1, pad * steps, units).sum(0)


def frequencies(power: Tensor) -> tuple[Tensor, Tensor]:
    """(omega in cycles/step, k in cycles/unit) of a power spectrum's rows and columns."""
    return torch.fft.fftfreq(power.shape[0], dtype=torch.float64), torch.fft.fftfreq(
        power.shape[1], dtype=torch.float64
    )
