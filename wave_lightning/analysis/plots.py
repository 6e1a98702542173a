"""Figures for papers: space-time images, 2D FFT power with the fitted line, ring animations.

Figures are built as matplotlib.figure.Figure, outside pyplot: no GUI backend, no global figure
list to leak from a training callback."""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure
from torch import Tensor

from .speed import WaveMeasure

COLUMNS = 3
NAMED_WAVE_SCORE = 0.1
PANEL = (4.2, 3.2)
RING_FIGURE = (7.0, 6.0)  # inches; at RING_DPI a 700 x 600 GIF
RING_DPI = 100
RING_RADIUS_OFFSET = 2.0  # ring r at radius r + 2: the innermost ring is not a point


def panel_grid(count: int, title: str) -> tuple[Figure, list]:
    """A figure with `count` panels, COLUMNS per row, and an overall title."""
    cols = min(count, COLUMNS)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes.flat[:count])


def ring_label(ring: int, measure: WaveMeasure | None) -> str:
    """Panel title: the ring, and its speed and score when measured."""
    if measure is None:
        return f"ring {ring}"
    speed = shown_speed(measure.speed)
    if not same_line(measure):
        speed += f" (wave {shown_speed(measure.wave_speed)})"
    return f"ring {ring}: v = {speed} units/step, score {measure.score:.2f}"


def same_line(measure: WaveMeasure) -> bool:
    """Whether the moving line the score uses goes unnamed: it is the dominant line, or it
    scores below NAMED_WAVE_SCORE (a chance line through noise is not worth drawing)."""
    return measure.wave_speed == measure.speed or not measure.score >= NAMED_WAVE_SCORE


def shown_speed(speed: float) -> str:
    """A speed to two decimals, signed, without a negative zero."""
    return f"{round(speed, 2) + 0.0:+.2f}"


def plot_spacetime(
    images: Tensor, measures: Sequence[WaveMeasure] | None = None, title: str = "Space-time"
) -> Figure:
    """One panel per ring of images (rings, units, T): unit on the ring against time."""
    fig, axes = panel_grid(images.shape[0], title)
    for ring, ax in enumerate(axes):
        shown = ax.imshow(
            images[ring].numpy(), aspect="auto", origin="lower", cmap="magma", interpolation="none"
        )
        ax.set(xlabel="time (steps)", ylabel="unit on ring")
        ax.set_title(ring_label(ring, measures[ring] if measures else None), fontsize=9)
        fig.colorbar(shown, ax=ax, label="activation")
    return fig


def velocity_line(speed: float, points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The line omega = -v k, wrapped into [-1/2, 1/2), with NaN breaks where it wraps."""
    k = np.linspace(-0.5, 0.5, points)
    omega = np.remainder(-speed * k + 0.5, 1.0) - 0.5
    omega[1:][np.abs(np.diff(omega)) > 0.5] = np.nan
    return k, omega


def plot_spectra(
    powers: Sequence[Tensor], measures: Sequence[WaveMeasure], title: str = "2D FFT power"
) -> Figure:
    """One panel per ring: log power over (k, omega), centred, with the fitted velocity line."""
    fig, axes = panel_grid(len(powers), title)
    for ring, (ax, power) in enumerate(zip(axes, powers, strict=True)):
        shifted = torch.fft.fftshift(power).numpy()
        relative = np.log10(shifted / max(shifted.max(), 1e-300) + 1e-12)
        shown = ax.imshow(
            relative,
            aspect="auto",
            origin="lower",
            extent=(-0.5, 0.5, -0.5, 0.5),
            cmap="viridis",
            vmin=-6,
            vmax=0,
        )
        measure = measures[ring]
        k, omega = velocity_line(measure.speed)
        ax.plot(k, omega, "w--", lw=1.2, label=f"ω = -v k, v = {shown_speed(measure.speed)}")
        if not same_line(measure):
            k, omega = velocity_line(measure.wave_speed)
            label = f"wave, v = {shown_speed(measure.wave_speed)}"
            ax.plot(k, omega, ":", color="cyan", lw=1.4, label=label)
        ax.set(xlabel="wavenumber k (cycles/unit)", ylabel="frequency ω (cycles/step)")
        ax.set_title(ring_label(ring, measure), fontsize=9)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
        fig.colorbar(shown, ax=ax, label="log10 power (rel. to max)")
    return fig


def animate_rings(states: Tensor, path: str | Path, fps: int = 8, title: str = "Rings") -> Path:
    """An animated GIF of states (T, rings, units), one frame per step (see ring_figure)."""
    fig, draw = ring_figure(states, title)
    path = Path(path)
    animation = FuncAnimation(fig, draw, frames=states.shape[0], blit=False)
    animation.save(path, writer=PillowWriter(fps=fps), dpi=RING_DPI)
    return path


def ring_figure(states: Tensor, title: str) -> tuple[Figure, Callable[[int], tuple]]:
    """The rings' figure and its frame function: ring r drawn as a circle of radius r + 2,
    each unit coloured by its activation over the ring's largest one at that time, so that a
    wave stays visible while the overall activity grows or decays. The horizontal axis names
    each ring at its radius, below its unit 0 (3 o'clock)."""
    steps, rings, units = states.shape
    angle = 2 * np.pi * np.arange(units) / units
    radii = np.arange(rings) + RING_RADIUS_OFFSET
    radius = np.repeat(radii, units)
    x, y = radius * np.tile(np.cos(angle), rings), radius * np.tile(np.sin(angle), rings)
    peak = states.abs().amax(dim=2, keepdim=True).clamp_min(1e-12)
    values = (states / peak).reshape(steps, -1).numpy()
    fig = Figure(figsize=RING_FIGURE, layout="constrained")
    ax = fig.subplots()
    extent = radii[-1] + 1.0
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal")
    spacing = 2 * np.pi * radius / units  # distance between neighbours, in data units
    points_per_unit = RING_FIGURE[1] * 0.8 * 72 / (2 * extent)
    size = (0.9 * np.minimum(spacing, 1.0) * points_per_unit) ** 2  # marker area in points^2
    dots = ax.scatter(x, y, c=values[0], s=size, cmap="magma", vmin=min(0.0, values.min()), vmax=1)
    fig.colorbar(dots, ax=ax, label="activation / ring's max at t", shrink=0.8)
    ax.set_xticks(radii, [str(r) for r in range(rings)])
    ax.set_xlabel("ring (channel), at radius r + 2; unit 0 at 3 o'clock, counter-clockwise")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)

    def draw(t: int):
        dots.set_array(values[t])
        ax.set_title(f"{title}: t = {t} steps", fontsize=11)
        return (dots,)

    draw(0)
    return fig, draw


def sheet_range(sheets: Tensor) -> tuple[float, float]:
    """One colour range for every panel of sheets: [min(0, lowest), highest]."""
    return min(0.0, float(sheets.min())), max(float(sheets.max()), 1e-12)


def plot_sheet_snapshots(sheets: Tensor, times: Sequence[int], title: str = "Sheets") -> Figure:
    """Sheets (T, n_ch, H, W) as images: one row per channel, one column per time in `times`,
    all on one colour scale; row 0 at the top, column 0 at the left (the torus cut open)."""
    n_ch = sheets.shape[1]
    fig = Figure(figsize=(2.2 * len(times) + 1, 2.2 * n_ch + 0.6), layout="constrained")
    axes = fig.subplots(n_ch, len(times), squeeze=False)
    low, high = sheet_range(sheets)
    for c in range(n_ch):
        for ax, t in zip(axes[c], times, strict=True):
            shown = ax.imshow(sheets[t, c].numpy(), cmap="magma", vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"channel {c}, t = {t}", fontsize=8)
    fig.colorbar(shown, ax=axes, label="activation", shrink=0.8)
    fig.suptitle(title)
    return fig


def animate_sheets(sheets: Tensor, path: str | Path, fps: int = 8, title: str = "Sheets") -> Path:
    """An animated GIF of sheets (T, n_ch, H, W): the channels side by side, each frame on the
    colour scale of its own largest |activation| (a wave stays visible as activity decays)."""
    steps, n_ch = sheets.shape[:2]
    peak = sheets.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    frames = (sheets / peak).numpy()
    fig = Figure(figsize=(2.4 * n_ch, 2.8), layout="constrained")
    axes = fig.subplots(1, n_ch, squeeze=False)[0]
    images = []
    for c, ax in enumerate(axes):
        images.append(ax.imshow(frames[0, c], cmap="magma", vmin=min(0.0, frames.min()), vmax=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"channel {c}", fontsize=8)

    def draw(t: int):
        for c, image in enumerate(images):
            image.set_data(frames[t, c])
        fig.suptitle(f"{title}: t = {t} steps (activation / frame's max)", fontsize=9)
        return images

    path = Path(path)
    FuncAnimation(fig, draw, frames=steps, blit=False).save(
        path, writer=PillowWriter(fps=fps), dpi=72
    )
    return path
