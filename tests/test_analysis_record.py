"""Recording states as rings, space-time images and impulse inputs."""

import pytest
import torch

from wave_lightning.analysis import impulse_inputs, record_states, ring_shape, spacetime_images
from wave_lightning.nn import GRU, IRNN, LocalRNN, WaveRNN


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (WaveRNN(2, 8, n_ch=3), (3, 8)),
        (LocalRNN(2, 8, n_ch=2), (2, 8)),
        (IRNN(2, 12), (1, 12)),
        (GRU(2, 5), (1, 5)),
    ],
)
def test_ring_shape_and_recorded_states_are_ring_major(layer, shape):
    assert ring_shape(layer) == shape
    x = torch.randn(2, 7, 2)
    layer.train()
    states = record_states(layer, x)
    assert states.shape == (2, 7, *shape)
    assert layer.training
    output, _ = layer(x)
    assert torch.equal(states, output.detach().reshape(2, 7, *shape))


def test_a_shift_ring_moves_an_impulse_one_unit_per_step_in_the_spacetime_image():
    layer = WaveRNN(1, 6, n_ch=2)
    x = torch.zeros(1, 5, 1)
    x[0, 0, 0] = 1.0
    images = spacetime_images(record_states(layer, x))
    assert images.shape == (2, 6, 5)
    expected = torch.zeros(6, 5)
    expected[torch.arange(5), torch.arange(5)] = 1.0
    assert torch.equal(images[0], expected) and torch.equal(images[1], expected)
    with pytest.raises(ValueError, match="example"):
        spacetime_images(record_states(layer, x), example=1)


def test_impulse_inputs_hold_the_asked_number_of_one_hot_pulses_at_distinct_times():
    x = impulse_inputs(5, 20, 4, impulses=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 20, 4)
    assert torch.equal(x.sum((1, 2)), torch.full((5,), 3.0))
    assert torch.equal(x.sum(2).amax(1), torch.ones(5))
    with pytest.raises(ValueError, match="impulses"):
        impulse_inputs(1, 2, 1, impulses=3)
