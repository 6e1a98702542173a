"""2-D sheets: states as (B, T, n_ch, H, W) images, and each channel's wave velocity.

The velocity is measured two ways after one pulse on every input at t = 0: by tracking the
circular centre of mass of each channel's |activity| on the torus, step by step, and by the
plane omega = -(vy ky + vx kx) through the 3-D FFT power over (t, y, x) that holds the most
(see docs/analysis.md).
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .plots import animate_sheets, plot_sheet_snapshots
from .record import record_states, ring_shape
from .report import finite

SNAPSHOTS = 6
SILENT = 1e-12


@dataclass(frozen=True)
class SheetVelocity:
    """One channel's mean displacement per step (rows down, columns right), its length (units
    per step) and its direction in degrees [0, 360), counter-clockwise from right (up 90)."""

    vy: float
    vx: float
    speed: float
    direction: float

    @classmethod
    def of(cls, vy: float, vx: float) -> "SheetVelocity":
        """The velocity (vy, vx) with its speed and direction (NaN for a NaN velocity)."""
        return cls(vy, vx, math.hypot(vy, vx), math.degrees(math.atan2(-vy, vx)) % 360.0)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def sheet_shape(layer: nn.Module) -> tuple[int, int, int] | None:
    """(n_ch, height, width) of a sheet layer, None for any other layer."""
    if all(hasattr(layer, name) for name in ("n_ch", "height", "width")):
        return int(layer.n_ch), int(layer.height), int(layer.width)
    return None


def layer_size(layer: nn.Module) -> tuple[int, int]:
    """(channels, N) of a layer: a ring layer's rings and units per ring; a sheet's sheets and
    its longer side (the most steps a wave travels before it wraps); a dense layer is one channel
    of hidden_size units (under the shift init, one ring of that length)."""
    shape = sheet_shape(layer)
    if shape is not None:
        return shape[0], max(shape[1:])
    return ring_shape(layer)


def as_sheets(states: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """States (B, T, hidden) or (B, T, rings, units) as (B, T, n_ch, H, W)."""
    return states.reshape(*states.shape[:2], *shape)


def circular_position(mass: Tensor, size: int) -> Tensor:
    """Circular mean position of mass (..., size) along its last axis, in units [0, size)."""
    phase = torch.exp(2j * math.pi * torch.arange(size, dtype=torch.float64) / size)
    angle = torch.angle((mass.double() * phase).sum(-1))
    return torch.remainder(angle * size / (2 * math.pi), size)


def wrapped_steps(position: Tensor, size: int) -> Tensor:
    """Per-step displacements of positions (T, ...) on a circle of `size`, in [-size/2, size/2)."""
    return torch.remainder(position.diff(dim=0) + size / 2, size) - size / 2


def track_velocity(sheets: Tensor) -> list[SheetVelocity]:
    """Velocities of sheets (T, n_ch, H, W) by the circular centre of mass of |activity|,
    averaged over the steps where a channel is active at both ends (NaN if never)."""
    _, n_ch, height, width = sheets.shape
    mass = sheets.abs().double()
    active = mass.sum((2, 3)) > SILENT
    vy = wrapped_steps(circular_position(mass.sum(3), height), height)
    vx = wrapped_steps(circular_position(mass.sum(2), width), width)
    both = active[1:] & active[:-1]
    velocities = []
    for c in range(n_ch):
        kept = both[:, c]
        mean_y = float(vy[kept, c].mean()) if kept.any() else math.nan
        mean_x = float(vx[kept, c].mean()) if kept.any() else math.nan
        velocities.append(SheetVelocity.of(mean_y, mean_x))
    return velocities


def frame_spectra(sheet: Tensor) -> tuple[Tensor, Tensor]:
    """One channel's sheet (T, H, W) as Hann-windowed spatial FFTs (T, K) of every frame, with
    their wavevectors k (K, 2) = (ky, kx) in cycles/unit; the k = (0, 0) term is left out."""
    steps, height, width = sheet.shape
    window = torch.hann_window(steps, periodic=False, dtype=torch.float64)
    frames = torch.fft.fft2(sheet.double() * window[:, None, None]).reshape(steps, -1)[:, 1:]
    ky = torch.fft.fftfreq(height, dtype=torch.float64)
    kx = torch.fft.fftfreq(width, dtype=torch.float64)
    k = torch.stack(torch.meshgrid(ky, kx, indexing="ij"), -1).reshape(-1, 2)[1:]
    return frames, k


def plane_power(frames: Tensor, k: Tensor, velocities: Tensor, chunk: int = 256) -> Tensor:
    """The 3-D FFT power on each plane omega = -(vy ky + vx kx) of velocities (V, 2) = (vy, vx):
    the temporal Fourier transform of every frame spectrum evaluated exactly at its plane's
    frequency (no grid to interpolate), |.|^2 summed over the wavevectors."""
    t = torch.arange(frames.shape[0], dtype=torch.float64)
    sums = []
    for part in velocities.split(chunk):
        phase = torch.exp(2j * math.pi * (part @ k.T)[..., None] * t)  # (V, K, T)
        sums.append(((phase * frames.T).sum(-1).abs() ** 2).sum(-1))
    return torch.cat(sums)


def plane_velocity(sheet: Tensor, max_speed: float = 2.0) -> tuple[float, float]:
    """(vy, vx) of the plane holding the most power for a sheet (T, H, W): a grid of step 1/T
    over |v| <= min(max_speed, side / 2) on each axis, then a grid 20 times finer around the
    best point."""
    frames, k = frame_spectra(sheet)
    limits = [min(max_speed, side / 2) for side in sheet.shape[1:]]
    step = 1.0 / sheet.shape[0]
    axes = [torch.arange(-round(m / step), round(m / step) + 1) * step for m in limits]
    coarse = torch.cartesian_prod(*axes).double()
    best = coarse[plane_power(frames, k, coarse).argmax()]
    offsets = torch.linspace(-step, step, 41, dtype=torch.float64)
    fine = best + torch.cartesian_prod(offsets, offsets)
    vy, vx = fine[plane_power(frames, k, fine).argmax()].tolist()
    return vy, vx


def fft_velocity(sheets: Tensor, max_speed: float = 2.0) -> list[SheetVelocity]:
    """Velocities of sheets (T, n_ch, H, W) by the 3-D FFT plane (plane_velocity); NaN for a
    channel without activity. A wave that does not move puts its power on omega = 0: v = 0."""
    velocities = []
    for c in range(sheets.shape[1]):
        sheet = sheets[:, c]
        silent = float(sheet.abs().sum()) <= SILENT
        vy, vx = (math.nan, math.nan) if silent else plane_velocity(sheet, max_speed)
        velocities.append(SheetVelocity.of(vy, vx))
    return velocities


def impulse_sheets(layer: nn.Module, steps: int) -> Tensor:
    """The sheets (T, n_ch, H, W) after one pulse on every input at t = 0."""
    x = torch.zeros(1, steps, layer.input_size)
    x[:, 0] = 1.0
    return as_sheets(record_states(layer, x), sheet_shape(layer))[0]


def write_sheet_report(
    layer: nn.Module, states: Tensor, out_dir: str | Path, example: int = 0, title: str = ""
) -> list[Path]:
    """sheets.png (snapshots of one example), sheets.gif and velocity.json (impulse tracking
    over one lap of the larger side, by centre of mass and by 3-D FFT) for a sheet layer;
    nothing for other layers."""
    shape = sheet_shape(layer)
    if shape is None:
        return []
    out = Path(out_dir)
    sheets = as_sheets(states, shape)[example]
    times = torch.linspace(0, len(sheets) - 1, min(SNAPSHOTS, len(sheets))).round().long()
    fig = plot_sheet_snapshots(sheets, times.tolist(), f"{title}sheets, example {example}")
    fig.savefig(out / "sheets.png", dpi=100)
    gif = animate_sheets(sheets, out / "sheets.gif", title=title.strip(" :") or "sheets")
    impulse = impulse_sheets(layer, max(shape[1:]) + 1)
    report = {
        "method": "impulse centre of mass",
        "channels": [v.as_dict() for v in track_velocity(impulse)],
        "fft": {
            "method": "3-D FFT plane",
            "channels": [v.as_dict() for v in fft_velocity(impulse)],
        },
    }
    (out / "velocity.json").write_text(json.dumps(finite(report), indent=2) + "\n")
    return [out / "sheets.png", gif, out / "velocity.json"]
