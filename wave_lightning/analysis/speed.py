"""Wave speed and wave score: the line omega = -v k through the 2D FFT power that holds the most.

A pattern moving v units per step, h_t[i] = f(i - v t), puts each wavenumber k (cycles/unit)
at the temporal frequency omega = -v k (cycles/step), wrapped into [-1/2, 1/2): its power lies
on one line through the origin. See docs/analysis.md for the exact definitions.
"""

import math
from dataclasses import asdict, dataclass

import torch
from torch import Generator, Tensor

from .fft import DEFAULT_PAD, frequencies, power_spectrum

DEFAULT_MAX_SPEED = 4.0


@dataclass(frozen=True)
class WaveMeasure:
    """One ring's measures: speeds (units/step), power fractions, wave score (see best_line)."""

    speed: float
    wave_speed: float
    line_fraction: float
    stationary_fraction: float
    shuffled_fraction: float
    score: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def wrapped(x: Tensor) -> Tensor:
    """x wrapped into [-1/2, 1/2): frequencies are periodic with period 1 on a lattice."""
    return torch.remainder(x + 0.5, 1.0) - 0.5


def line_power(power: Tensor, velocities: Tensor, clear: float = 0.0) -> Tensor:
    """Power on each line omega = -v k (k != 0), read off the spectrum by linear interpolation,
    leaving out the points within `clear` cycles/step of omega = 0 (|v k| < clear)."""
    bins = power.shape[0]
    _, k = frequencies(power)
    table = power[:, 1:].T  # (N-1, M): one row of temporal frequencies per nonzero k
    position = torch.remainder(-k[1:, None] * velocities[None, :], 1.0) * bins  # (N-1, V)
    low = position.floor().long()
    frac = position - low
    below = table.gather(1, low % bins)
    above = table.gather(1, (low + 1) % bins)
    kept = (k[1:, None] * velocities[None, :]).abs() >= clear
    return ((below * (1 - frac) + above * frac) * kept).sum(0)


def estimate_speed(
    power: Tensor, steps: int, max_speed: float = DEFAULT_MAX_SPEED, min_speed: float = 0.0
) -> float:
    """The v with min_speed <= |v| <= max_speed whose line holds the most power (NaN if none).

    A grid of step 1/steps (finer than the peak, whose width in v is at least 4/steps), then a
    grid 50 times finer around the best point. With min_speed > 0 (moving lines), the points
    of a line within 4/steps of omega = 0, inside the stationary band, do not count.
    """
    clear = 4.0 / steps if min_speed > 0 else 0.0
    limit = min(max_speed, power.shape[1] / 2)
    step = 1.0 / steps
    coarse = torch.arange(-round(limit / step), round(limit / step) + 1, dtype=torch.float64) * step
    coarse = coarse[(coarse.abs() >= min_speed) & (coarse.abs() <= limit)]
    if not len(coarse):
        return math.nan
    best = coarse[line_power(power, coarse, clear).argmax()]
    fine = best + torch.linspace(-step, step, 101, dtype=torch.float64)
    fine = fine[(fine.abs() >= min_speed) & (fine.abs() <= limit)]
    return float(fine[line_power(power, fine, clear).argmax()])


def near_line(power: Tensor, speed: float, halfwidth: float) -> Tensor:
    """Mask of the spectrum's k != 0 columns within `halfwidth` cycles/step of omega = -v k."""
    omega, k = frequencies(power)
    return wrapped(omega[:, None] + speed * k[None, 1:]).abs() <= halfwidth


def share(power: Tensor, mask: Tensor, columns: Tensor) -> float:
    """Share of the power in the selected k != 0 columns that lies under `mask` (0 if none)."""
    selected = power[:, 1:][:, columns]
    total = selected.sum()
    return float(selected[mask[:, columns]].sum() / total) if total > 0 else 0.0


def time_shuffled(images: Tensor, generator: Generator | None = None) -> Tensor:
    """images (B, T, N) with the time order of each example independently permuted."""
    order = torch.rand(images.shape[:2], generator=generator).argsort(dim=1)
    return images.gather(1, order[:, :, None].expand_as(images))


def best_line(images: Tensor, pad: int, max_speed: float) -> tuple[float, float, float, float]:
    """(speed, wave speed, line fraction, stationary fraction) of space-time images (B, T, N);
    NaNs when the images hold no power at k != 0.

    speed is the dominant line's (0 for a standing pattern); wave speed the best moving line's,
    |v| >= 8/T, the slowest whose band clears the stationary band at some k <= 1/2. Bands are
    2/T cycles/step wide each side of a line (the Hann window's main lobe). The line fraction
    is the wave line's share of the power, counted only over wavenumbers where its band is
    clear of the stationary band (|v k| >= 4/T), where moving can be told from standing; the
    stationary fraction is the share of all power within the band of omega = 0.
    """
    power = power_spectrum(images, pad)
    if power[:, 1:].sum() <= 0:
        return math.nan, math.nan, math.nan, math.nan
    steps = images.shape[1]
    speed = estimate_speed(power, steps, max_speed)
    moving = 8.0 / steps
    wave_speed = speed if abs(speed) >= moving else estimate_speed(power, steps, max_speed, moving)
    halfwidth = 2.0 / steps
    _, k = frequencies(power)
    stationary = share(power, near_line(power, 0.0, halfwidth), torch.ones_like(k[1:]).bool())
    if math.isnan(wave_speed):
        return speed, wave_speed, 0.0, stationary
    resolvable = (wave_speed * k[1:]).abs() >= 2 * halfwidth
    line = share(power, near_line(power, wave_speed, halfwidth), resolvable)
    return speed, wave_speed, line, stationary


def measure_ring(
    images: Tensor,
    generator: Generator | None = None,
    pad: int = DEFAULT_PAD,
    max_speed: float = DEFAULT_MAX_SPEED,
) -> WaveMeasure:
    """Speeds and wave score of one ring's space-time images (B, T, N), summed over the batch.

    score = max(0, (f - f_shuffled) / (1 - f_shuffled)), f the line fraction of the best
    moving line (see best_line): 1 for a clean travelling wave, 0 for noise and standing
    patterns.
    """
    speed, wave_speed, line, stationary = best_line(images, pad, max_speed)
    if math.isnan(speed):
        return WaveMeasure(*[math.nan] * 6)
    _, _, shuffled, _ = best_line(time_shuffled(images, generator), pad, max_speed)
    score = max(0.0, (line - shuffled) / (1 - shuffled)) if shuffled < 1 else 0.0
    return WaveMeasure(speed, wave_speed, line, stationary, shuffled, score)


def measure_waves(
    states: Tensor, seed: int = 0, pad: int = DEFAULT_PAD, max_speed: float = DEFAULT_MAX_SPEED
) -> list[WaveMeasure]:
    """One WaveMeasure per ring of recorded states (B, T, rings, units)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        measure_ring(states[:, :, ring], generator, pad, max_speed)
        for ring in range(states.shape[2])
    ]


def summarize(measures: list[WaveMeasure]) -> dict:
    """Means over rings (NaN rings, with no activity, left out) and the per-ring values."""
    valid = [m for m in measures if not math.isnan(m.score)]
    mean = (lambda name: sum(getattr(m, name) for m in valid) / len(valid)) if valid else None
    return {
        "speed": mean("speed") if mean else math.nan,
        "wave_speed": mean("wave_speed") if mean else math.nan,
        "score": mean("score") if mean else math.nan,
        "per_ring": [m.as_dict() for m in measures],
    }
