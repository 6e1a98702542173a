"""Sequence models: readouts from the last state or from every step."""

import pytest
import torch

from wave_lightning.models import SequenceModel
from wave_lightning.nn import GRU, WaveRNN


def test_linear_readout_of_the_last_state():
    torch.manual_seed(0)
    model = SequenceModel(WaveRNN(2, 5, 2), output_size=3)
    x = torch.randn(4, 6, 2)
    states, last = model.layer(x)
    assert torch.equal(model(x), model.readout(last))
    assert model(x).shape == (4, 3)


def test_mlp_readout_at_every_step():
    model = SequenceModel(GRU(2, 7), output_size=3, readout="mlp", read_from="all", mlp_hidden=11)
    assert [m.__class__.__name__ for m in model.readout] == ["Linear", "ReLU", "Linear"]
    assert model.readout[0].weight.shape == (11, 7)
    x = torch.randn(4, 6, 2)
    assert torch.equal(model(x), model.readout(model.layer(x)[0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"readout": "conv"}, "readout='conv' is not allowed"),
        ({"read_from": "first"}, "read_from='first' is not allowed"),
        ({"output_size": 0}, "output_size must be a positive integer"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SequenceModel(GRU(2, 3), **({"output_size": 2} | kwargs))
