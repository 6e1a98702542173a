"""The options of one wave analysis, shared by `wave-lightning analyze` and `WaveAnalysis`.

Both doors take their choices, least values and defaults from here, so they cannot drift: the
defaults both agree on are the dataclass's own, the ones where they differ are the two presets
at the end, side by side.
"""

from dataclasses import dataclass

from torch import nn

from .report import default_max_delay
from .sheets import layer_size

INPUTS = ("data", "impulses", "spikes")

# The least value of every count option (None, where allowed, asks for the layer's default).
MINIMUM = {
    "examples": 1,
    "steps": 2,
    "impulses": 1,
    "onset_examples": 0,
    "max_delay": 1,
    "max_rings": 1,
    "spikes": 1,
    "spike_examples": 0,
    "spike_steps": 2,
}
# Decoders fit on 75% of their examples and score the rest: 0 skips them, 1 leaves no split.
DECODER_EXAMPLES = ("onset_examples", "spike_examples")


def counts(value: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """The counts of an option's value: none for None, each of a tuple, else the value."""
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class AnalysisOptions:
    """What drives the layer and what is measured; a value out of range raises a ValueError
    naming the option and what it allows.

    inputs: the run's data, `impulses` random pulses per sequence of `steps` steps, or spike
    trains of spikes[0] spikes per input over `spike_steps` steps. onset_examples and
    spike_examples 0 skip those decoders; spike decoding runs every count in `spikes`.
    """

    examples: int
    onset_examples: int
    max_rings: int
    spikes: tuple[int, ...]
    spike_examples: int
    inputs: str = "data"
    steps: int | None = None
    impulses: int = 3
    max_delay: int | None = None
    seed: int = 0
    spike_steps: int | None = None

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        if not self.spikes:
            raise ValueError("spikes must name at least one spike count")
        for name, least in MINIMUM.items():
            if any(count < least for count in counts(getattr(self, name))):
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in DECODER_EXAMPLES:
            if getattr(self, name) == 1:
                raise ValueError(f"{name} must be 0 (skip) or >= 2, got 1")
        if self.spike_steps is not None and max(self.spikes) > self.spike_steps:
            raise ValueError(
                f"spikes must not exceed the {self.spike_steps} steps of the spike trains, "
                f"got {list(self.spikes)}"
            )

    def impulse_steps(self, layer: nn.Module, seq_len: int | None = None) -> int:
        """Length of impulse inputs: `steps`, else the task's seq_len, else two laps of a ring
        (2 N, N = units per ring, a sheet's longer side, a dense layer's hidden_size)."""
        return self.steps or seq_len or 2 * layer_size(layer)[1]

    def spike_window(self, layer: nn.Module) -> int:
        """Length of spike trains: `spike_steps`, else onset decoding's window (ring, <= 64)."""
        return self.spike_steps or default_max_delay(layer)


# Where the two doors differ, in one place.
# - Only analyze has --ckpt, --config, --out, --stage and --example (cli.py); only the callback
#   has every_n_epochs (callback.py).
# - analyze decodes spikes for --inputs spikes, every count of --spikes 1 2 4, over its one
#   --steps; the callback decodes one count (`spikes: 2`) over its own spike_steps whenever
#   spike_examples > 0, whatever drives the figures.
# - analyze runs once on a finished checkpoint: a bigger batch (the FFT sums over it), more
#   decoding examples, more rings drawn. WaveAnalysis runs every few epochs inside training: a
#   small batch, fewer onset examples, spike decoding off.
ANALYZE_DEFAULTS = AnalysisOptions(
    examples=32, onset_examples=1024, max_rings=6, spikes=(1, 2, 4), spike_examples=1024
)
CALLBACK_DEFAULTS = AnalysisOptions(
    examples=8, onset_examples=256, max_rings=4, spikes=(2,), spike_examples=0
)
