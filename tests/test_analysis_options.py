"""AnalysisOptions: the one options type behind `wave-lightning analyze` and WaveAnalysis."""

from dataclasses import replace

import pytest

from wave_lightning.analysis import WaveAnalysis
from wave_lightning.analysis.cli import analysis_options, build_parser
from wave_lightning.analysis.inputs import driving_inputs
from wave_lightning.analysis.options import ANALYZE_DEFAULTS, CALLBACK_DEFAULTS, INPUTS
from wave_lightning.nn import IRNN, WaveRNN, WaveSheetRNN
from wave_lightning.tasks import PerStepClassification


def no_data(n: int):
    raise AssertionError("impulse inputs must not read the run's data")


def test_both_doors_take_choices_and_defaults_from_analysis_options():
    parser = build_parser()
    assert analysis_options(parser.parse_args(["--ckpt", "x"])) == ANALYZE_DEFAULTS
    inputs = next(action for action in parser._actions if action.dest == "inputs")
    assert tuple(inputs.choices) == INPUTS
    assert WaveAnalysis().options == CALLBACK_DEFAULTS


def test_both_doors_drive_a_layer_with_impulses_of_two_laps_of_a_ring():
    layer = WaveRNN(3, n_hid=256, n_ch=16)  # 4096 units: 512 steps, not 8192
    args = build_parser().parse_args(["--ckpt", "x", "--inputs", "impulses"])
    cli = driving_inputs(analysis_options(args), layer, no_data)
    task = PerStepClassification(layer, 3)
    callback = WaveAnalysis(inputs="impulses").fixed_batch(None, task)
    assert cli.shape == (32, 512, 3) and callback.shape == (8, 512, 3)
    assert (cli[:8] == callback).all()  # same seed: the callback's batch is the CLI's first 8


@pytest.mark.parametrize(
    ("layer", "steps"),
    [(WaveSheetRNN(3, height=4, width=9, n_ch=2), 18), (IRNN(3, hidden_size=20), 40)],
)
def test_the_default_impulse_length_is_two_laps_of_the_longest_ring(layer, steps):
    assert CALLBACK_DEFAULTS.impulse_steps(layer) == steps
    assert CALLBACK_DEFAULTS.impulse_steps(layer, seq_len=7) == 7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": "x"}, "inputs must be one of"),
        ({"examples": 0}, "examples must be >= 1, got 0"),
        ({"spikes": (2, 0)}, r"spikes must be >= 1, got \(2, 0\)"),
        ({"onset_examples": 1}, r"onset_examples must be 0 \(skip\) or >= 2, got 1"),
        ({"spikes": (3,), "spike_steps": 2}, "spikes must not exceed the 2 steps"),
    ],
)
def test_a_bad_option_is_named_with_what_it_allows(change, message):
    with pytest.raises(ValueError, match=message):
        replace(CALLBACK_DEFAULTS, **change)
