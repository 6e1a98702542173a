"""Wave speed and wave score: synthetic waves of known speed, standing bumps, noise, layers."""

import math

import pytest
import torch

from wave_lightning.analysis import impulse_inputs, measure_ring, power_spectrum, record_states
from wave_lightning.analysis.fft import frequencies
from wave_lightning.analysis.speed import line_power, measure_waves, summarize, time_shuffled
from wave_lightning.nn import IRNN, WaveRNN


def travelling_bumps(speed: float, units: int = 32, steps: int = 64, examples: int = 2):
    """Gaussian bumps (width 1.5 units) on a ring moving `speed` units per step, (B, T, N)."""
    t = torch.arange(steps, dtype=torch.float64)[:, None]
    x = torch.arange(units, dtype=torch.float64)[None]
    start = torch.arange(examples, dtype=torch.float64)[:, None, None] * 5.0
    offset = torch.remainder(x - start - speed * t + units / 2, units) - units / 2
    return torch.exp(-(offset**2) / (2 * 1.5**2))


@pytest.mark.parametrize("speed", [1.0, 0.5, 0.3, 1.5, -0.7, -1.0, -2.25])
def test_a_travelling_wave_of_known_speed_is_measured_within_5_percent(speed):
    measure = measure_ring(travelling_bumps(speed), torch.Generator().manual_seed(0))
    assert measure.speed == pytest.approx(speed, rel=0.05)
    assert measure.wave_speed == measure.speed
    assert measure.line_fraction > 0.99
    assert measure.score > 0.98


def test_a_standing_bump_has_speed_zero_and_no_wave_score():
    measure = measure_ring(travelling_bumps(0.0))
    assert abs(measure.speed) < 1e-6
    assert measure.stationary_fraction > 0.99
    assert measure.score == 0.0


def test_noise_has_a_low_wave_score():
    generator = torch.Generator().manual_seed(0)
    measure = measure_ring(torch.rand(4, 64, 32, generator=generator), generator)
    assert measure.line_fraction < 0.1
    assert 0.0 <= measure.score < 0.05


def test_silent_states_measure_nan_not_a_number_made_up():
    measure = measure_ring(torch.zeros(2, 16, 8))
    assert math.isnan(measure.speed) and math.isnan(measure.score)
    assert math.isnan(summarize([measure])["speed"])


def test_power_spectrum_keeps_parseval_and_the_frequency_axes():
    images = torch.randn(3, 10, 6, dtype=torch.float64)
    power = power_spectrum(images, pad=4)
    window = torch.hann_window(10, periodic=False, dtype=torch.float64)
    windowed = images * window[:, None]
    assert power.shape == (40, 6)
    assert float(power.sum()) == pytest.approx(40 * 6 * float((windowed**2).sum()), rel=1e-12)
    omega, k = frequencies(power)
    assert float(omega[1]) == pytest.approx(1 / 40) and float(k[1]) == pytest.approx(1 / 6)


def test_line_power_reads_a_single_spectral_peak_on_its_line_only():
    power = torch.zeros(16, 8, dtype=torch.float64)
    power[14, 1] = 1.0  # omega = -2/16 at k = 1/8: on the line v = 1
    velocities = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    assert line_power(power, velocities).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_time_shuffle_permutes_the_steps_of_each_example():
    images = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3)
    shuffled = time_shuffled(images, torch.Generator().manual_seed(1))
    for original, permuted in zip(images, shuffled, strict=True):
        assert sorted(map(tuple, permuted.tolist())) == sorted(map(tuple, original.tolist()))
    assert not torch.equal(shuffled, images)


def test_a_shift_initialised_wrnn_driven_by_impulses_moves_one_unit_per_step():
    torch.manual_seed(0)
    layer = WaveRNN(input_size=3, n_hid=24, n_ch=2)
    x = impulse_inputs(8, 48, 3, impulses=3, generator=torch.Generator().manual_seed(0))
    measures = measure_waves(record_states(layer, x))
    assert len(measures) == 2
    for measure in measures:
        assert measure.speed == pytest.approx(1.0, rel=0.05)
        assert measure.score > 0.9


def test_a_random_dense_irnn_has_a_low_wave_score():
    torch.manual_seed(0)
    layer = IRNN(input_size=3, hidden_size=24, recurrent_init="random")
    x = impulse_inputs(8, 48, 3, impulses=3, generator=torch.Generator().manual_seed(0))
    (measure,) = measure_waves(record_states(layer, x))
    assert measure.score < 0.2


def test_a_wave_under_a_stronger_standing_pattern_is_scored_by_its_share_of_power():
    images = 2 * travelling_bumps(0.0) + travelling_bumps(1.0)
    measure = measure_ring(images, torch.Generator().manual_seed(0))
    assert abs(measure.speed) < 1e-6
    assert measure.wave_speed == pytest.approx(1.0, rel=0.05)
    # the standing bump holds 4x the wave's power: a fifth of the power travels
    assert measure.line_fraction == pytest.approx(0.2, abs=0.01)
    assert 0.1 < measure.score < measure.line_fraction
    summary = summarize([measure, measure_ring(travelling_bumps(-0.5))])
    assert summary["speed"] == pytest.approx(measure.speed / 2 - 0.25, abs=1e-3)
    assert summary["wave_speed"] == pytest.approx((measure.wave_speed - 0.5) / 2, abs=1e-3)
