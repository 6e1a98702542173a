"""Onset decoding: which step and which input an impulse came from, from one state snapshot."""

import pytest
import torch

from wave_lightning.analysis import onset_decoding
from wave_lightning.nn import IRNN, WaveRNN


def test_a_shift_wrnn_decodes_every_delay_shorter_than_its_ring():
    result = onset_decoding(WaveRNN(3, 16, n_ch=2), max_delay=12, examples=512)
    assert result.delay_accuracy == 1.0
    assert result.delay_chance == pytest.approx(1 / 12)
    assert result.max_delay == 12


def test_delays_beyond_the_ring_wrap_and_decoding_drops():
    result = onset_decoding(WaveRNN(3, 16, n_ch=2), max_delay=32, examples=512)
    assert result.delay_accuracy < 0.8


def test_an_identity_wrnn_cannot_tell_delays_apart():
    layer = WaveRNN(3, 16, n_ch=2, recurrent_init="identity")
    result = onset_decoding(layer, max_delay=12, examples=512)
    assert result.delay_accuracy < 2 * result.delay_chance


def test_the_input_dimension_is_decoded_when_the_input_weights_separate_it():
    torch.manual_seed(0)
    separated = onset_decoding(IRNN(4, 32), max_delay=8, examples=512)
    assert separated.channel_accuracy == 1.0
    # the single-unit V-init feeds every input dimension to the same unit: indistinguishable
    merged = onset_decoding(WaveRNN(4, 16), max_delay=8, examples=512)
    assert merged.channel_accuracy < 2 * merged.channel_chance


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_delay": 0}, "max_delay"), ({"max_delay": 4, "train_fraction": 1.0}, "held-out")],
)
def test_bad_onset_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        onset_decoding(WaveRNN(1, 8), examples=64, **kwargs)
