"""One analysis of a layer on given inputs, and the folder of figures and measures it writes."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor, nn

from .fft import power_spectrum
from .onset import OnsetDecoding, onset_decoding
from .plots import animate_rings, plot_spacetime, plot_spectra
from .record import record_states, ring_shape
from .spacetime import spacetime_images
from .speed import WaveMeasure, measure_waves, summarize

MAX_ONSET_DELAY = 64


@dataclass
class Analysis:
    """Recorded states (B, T, rings, units), per-ring measures and spectra, onset decoding."""

    states: Tensor
    measures: list[WaveMeasure]
    powers: list[Tensor]
    onset: OnsetDecoding | None

    def summary(self) -> dict:
        """The numbers: mean speed and score, per-ring values, onset decoding."""
        examples, steps, rings, units = self.states.shape
        return {
            "examples": examples,
            "steps": steps,
            "rings": rings,
            "units": units,
            **summarize(self.measures),
            "onset": self.onset.as_dict() if self.onset else None,
        }

    def figures(self, example: int = 0, max_rings: int = 6, title: str = "") -> dict[str, Figure]:
        """The space-time image of one example and the batch's FFT power, first max_rings rings."""
        shown = slice(0, max_rings)
        measures = self.measures[shown]
        images = spacetime_images(self.states, example)[shown]
        return {
            "spacetime": plot_spacetime(images, measures, f"{title}space-time, example {example}"),
            "fft": plot_spectra(self.powers[shown], measures, f"{title}2D FFT power, all examples"),
        }


def default_max_delay(layer: nn.Module) -> int:
    """Onset delays up to one ring's length (where a wave wraps), at most MAX_ONSET_DELAY."""
    return min(ring_shape(layer)[1], MAX_ONSET_DELAY)


def analyze(
    layer: nn.Module,
    inputs: Tensor,
    seed: int = 0,
    onset_examples: int = 1024,
    max_delay: int | None = None,
) -> Analysis:
    """Record states on `inputs`, measure every ring, and decode onsets (onset_examples 0: skip)."""
    states = record_states(layer, inputs)
    measures = measure_waves(states, seed=seed)
    powers = [power_spectrum(states[:, :, ring]) for ring in range(states.shape[2])]
    onset = None
    if onset_examples:
        delay = max_delay or default_max_delay(layer)
        onset = onset_decoding(layer, delay, examples=onset_examples, seed=seed)
    return Analysis(states, measures, powers, onset)


def finite(value):
    """value with NaN replaced by None (JSON null), recursively."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def write_report(
    analysis: Analysis,
    out_dir: str | Path,
    meta: dict,
    example: int = 0,
    max_rings: int = 6,
    title: str = "",
) -> list[Path]:
    """spacetime.png, fft.png, rings.gif and measures.json (meta + the summary) in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in analysis.figures(example, max_rings, title).items():
        written.append(out / f"{name}.png")
        fig.savefig(written[-1], dpi=110)
    states = analysis.states[example, :, :max_rings]
    written.append(animate_rings(states, out / "rings.gif", title=title.strip(" :") or "rings"))
    written.append(out / "measures.json")
    written[-1].write_text(json.dumps(finite({**meta, **analysis.summary()}), indent=2) + "\n")
    return written
