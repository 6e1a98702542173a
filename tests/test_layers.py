"""Recurrent layers: exact dynamics of the inits, equivalences between layer kinds, checks."""

import pytest
import torch
from torch.func import functional_call

from wave_lightning.nn import GRU, IRNN, LSTM, LocalRNN, WaveRNN


def impulse(batch: int, steps: int, input_size: int = 1) -> torch.Tensor:
    """One unit pulse on every input at t = 0, then silence."""
    x = torch.zeros(batch, steps, input_size)
    x[:, 0] = 1.0
    return x


def ring_conv_matrix(weight: torch.Tensor, n_hid: int) -> torch.Tensor:
    """Dense (C*N, C*N) matrix of a circular convolution with kernel (C, C, K); differentiable."""
    n_ch, _, k = weight.shape
    shifts = torch.stack(
        [torch.eye(n_hid, dtype=weight.dtype).roll(tap - k // 2, dims=1) for tap in range(k)]
    )  # shifts[tap] @ h picks h[i + tap - K//2]
    blocks = torch.einsum("oik,knm->onim", weight, shifts)
    return blocks.reshape(n_ch * n_hid, n_ch * n_hid)


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("layer_class", [WaveRNN, LocalRNN])
def test_shift_init_moves_an_impulse_one_unit_per_step_without_decay(layer_class, activation):
    n_hid, n_ch, steps = 7, 3, 20
    layer = layer_class(1, n_hid, n_ch, activation=activation)
    states, last = layer(impulse(2, steps))
    rings = states.view(2, steps, n_ch, n_hid)
    for t in range(steps):
        expected = torch.zeros(n_hid)
        expected[t % n_hid] = 1.0
        assert torch.equal(rings[:, t], expected.expand(2, n_ch, n_hid))
    assert torch.equal(last, states[:, -1])


def test_shift_init_with_wider_kernel_still_moves_one_unit():
    layer = WaveRNN(1, 9, 2, kernel_size=5)
    rings = layer(impulse(1, 12))[0].view(12, 2, 9)
    assert all(rings[t, :, t % 9].eq(1).all() and rings[t].sum() == 2 for t in range(12))


def test_identity_init_keeps_an_impulse_still():
    layer = WaveRNN(1, 6, 2, recurrent_init="identity")
    rings = layer(impulse(1, 10))[0].view(10, 2, 6)
    expected = torch.zeros(2, 6)
    expected[:, 0] = 1.0
    assert all(torch.equal(rings[t], expected) for t in range(10))


def test_irnn_shift_init_is_one_ring_and_identity_init_stands_still():
    moving = IRNN(1, 5, recurrent_init="shift", input_init="single")(impulse(1, 8))[0][0]
    assert torch.equal(moving, torch.eye(5)[torch.arange(8) % 5])
    still = IRNN(1, 5, recurrent_init="identity", input_init="single")(impulse(1, 4))[0][0]
    assert torch.equal(still, torch.eye(5)[[0, 0, 0, 0]])


def test_init_modes_produce_the_described_weights():
    layer = WaveRNN(3, 5, 2, recurrent_init="shift", input_init="single")
    w = layer.recurrent.conv.weight
    expected = torch.zeros(2, 2, 3)
    expected[0, 0, 0] = expected[1, 1, 0] = 1.0
    assert torch.equal(w, expected) and torch.equal(layer.recurrent.conv.bias, torch.zeros(2))
    v = torch.zeros(10, 3)
    v[0] = v[5] = 1.0  # unit 0 of each ring, from every input
    assert torch.equal(layer.input.weight, v) and torch.equal(layer.input.bias, torch.zeros(10))

    identity = WaveRNN(1, 5, 2, recurrent_init="identity").recurrent.conv.weight
    assert torch.equal(identity[:, :, 1], torch.eye(2)) and identity[:, :, [0, 2]].eq(0).all()

    torch.manual_seed(0)
    normal = WaveRNN(4, 50, 4, input_init="normal").input
    assert normal.bias.eq(0).all() and abs(normal.weight.std().item() - 1e-3) < 1e-4

    torch.manual_seed(0)
    random = WaveRNN(1, 5, 32, recurrent_init="random").recurrent.conv  # Conv1d's default law
    bound = 1 / (32 * 3) ** 0.5
    assert random.weight.abs().max() <= bound and random.bias.abs().max() <= bound
    assert abs(random.weight.std().item() - bound / 3**0.5) < 0.05 * bound

    local = LocalRNN(1, 5, 2, recurrent_init="shift").recurrent
    assert torch.equal(local.weight, expected.unsqueeze(-1).expand(2, 2, 3, 5))
    assert local.bias.eq(0).all()


def test_irnn_init_modes():
    shift = IRNN(2, 4, recurrent_init="shift").recurrent
    assert torch.equal(shift.weight, torch.eye(4).roll(1, dims=0)) and shift.bias.eq(0).all()
    identity = IRNN(2, 4).recurrent
    assert torch.equal(identity.weight, torch.eye(4)) and identity.bias.eq(0).all()
    torch.manual_seed(1)
    random = IRNN(2, 4, recurrent_init="random").recurrent.weight
    assert not torch.equal(random, torch.eye(4)) and random.abs().max() <= 0.5


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
def test_wave_rnn_equals_irnn_with_the_circulant_matrix(activation):
    torch.manual_seed(0)
    n_hid, n_ch = 6, 3
    wave = WaveRNN(
        2, n_hid, n_ch, recurrent_init="random", input_init="default", activation=activation
    ).double()
    dense = IRNN(2, n_hid * n_ch, activation=activation).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, n_hid * n_ch, dtype=torch.float64)
    conv = wave.recurrent.conv
    params = {
        "input.weight": wave.input.weight,
        "input.bias": wave.input.bias,
        "recurrent.weight": ring_conv_matrix(conv.weight, n_hid),
        "recurrent.bias": conv.bias.repeat_interleave(n_hid),
    }
    out_wave, _ = wave(x, h0)
    out_dense, _ = functional_call(dense, params, (x, h0))
    torch.testing.assert_close(out_wave, out_dense)
    grad_out = torch.randn_like(out_wave)
    inputs = (x, conv.weight, conv.bias, wave.input.weight)
    grads_wave = torch.autograd.grad(out_wave, inputs, grad_out)
    grads_dense = torch.autograd.grad(out_dense, inputs, grad_out)
    for a, b in zip(grads_wave, grads_dense, strict=True):
        torch.testing.assert_close(a, b)


def test_local_rnn_with_equal_positions_equals_wave_rnn():
    torch.manual_seed(0)
    wave = WaveRNN(3, 8, 2, recurrent_init="random", input_init="default").double()
    local = LocalRNN(3, 8, 2, recurrent_init="random").double()
    local.load_state_dict(
        {
            "input.weight": wave.input.weight,
            "input.bias": wave.input.bias,
            "recurrent.weight": wave.recurrent.conv.weight.unsqueeze(-1).expand(-1, -1, -1, 8),
            "recurrent.bias": wave.recurrent.conv.bias.unsqueeze(-1).expand(-1, 8),
        }
    )
    x = torch.randn(5, 11, 3, dtype=torch.float64)
    out_wave, h_wave = wave(x)
    out_local, h_local = local(x)
    torch.testing.assert_close(out_local, out_wave)
    torch.testing.assert_close(h_local, h_wave)
    g_wave = torch.autograd.grad(out_wave.square().sum(), wave.input.weight)[0]
    g_local = torch.autograd.grad(out_local.square().sum(), local.input.weight)[0]
    torch.testing.assert_close(g_local, g_wave)


@pytest.mark.parametrize("layer_class", [WaveRNN, LocalRNN])
@pytest.mark.parametrize("frozen", ["recurrent", "input"])
def test_frozen_parts_get_no_gradient(layer_class, frozen):
    layer = layer_class(
        2, 5, 2, recurrent_init="random", input_init="default", **{f"freeze_{frozen}": True}
    )
    layer(torch.randn(3, 4, 2))[0].sum().backward()
    trained = "input" if frozen == "recurrent" else "recurrent"
    assert all(p.grad is None for p in getattr(layer, frozen).parameters())
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(layer, trained).parameters()
    )


def test_irnn_frozen_recurrent_gets_no_gradient():
    layer = IRNN(2, 4, freeze_recurrent=True)
    layer(torch.randn(3, 4, 2))[0].sum().backward()
    assert layer.recurrent.weight.grad is None and layer.input.weight.grad is not None


@pytest.mark.parametrize("layer_class", [LSTM, GRU])
def test_gated_wrappers_match_torch(layer_class):
    torch.manual_seed(0)
    layer = layer_class(3, 4)
    x, h0 = torch.randn(2, 5, 3), torch.randn(2, 4)
    out, h_n = layer(x, h0)
    state = h0.unsqueeze(0)
    if layer_class is LSTM:
        state = (state, torch.zeros_like(state))
    expected, _ = layer.rnn(x, state)
    assert torch.equal(out, expected) and torch.equal(h_n, expected[:, -1])
    assert layer.hidden_size == 4


def test_h0_is_the_initial_state():
    layer = WaveRNN(1, 5, 1, activation="identity")
    h0 = torch.arange(5.0).unsqueeze(0)
    out, _ = layer(torch.zeros(1, 2, 1), h0)
    assert torch.equal(out[0, 0], h0[0].roll(1)) and torch.equal(out[0, 1], h0[0].roll(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recurrent_init": "diagonal"}, "recurrent_init='diagonal' is not allowed"),
        ({"input_init": "zeros"}, "input_init='zeros' is not allowed"),
        ({"activation": "gelu"}, "activation='gelu' is not allowed; choose one of relu, tanh"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"n_hid": 2}, "n_hid (2) must be at least kernel_size (3)"),
        ({"n_ch": 0}, "n_ch must be a positive integer"),
        ({"kernel_size": 1}, "recurrent_init='shift' needs kernel_size >= 3"),
    ],
)
@pytest.mark.parametrize("layer_class", [WaveRNN, LocalRNN])
def test_bad_arguments_raise_clear_errors(layer_class, kwargs, message):
    args = {"input_size": 1, "n_hid": 8} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer_class(**args)


def test_irnn_bad_names_and_wrong_input_width():
    with pytest.raises(ValueError, match="recurrent_init='ring' is not allowed"):
        IRNN(1, 4, recurrent_init="ring")
    layer = WaveRNN(3, 8, 2)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time >= 1, 3\)"):
        layer(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"expected h0 of shape \(2, 16\)"):
        layer(torch.zeros(2, 5, 3), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="expected input of shape"):
        GRU(3, 4)(torch.zeros(5, 3))
