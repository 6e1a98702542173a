"""2-D wave sheets: exact shift / identity dynamics on the torus, fast form = reference, checks."""

import copy
import math

import pytest
import torch

from tests.helpers import ROOT
from wave_lightning.analysis.plots import plot_sheet_snapshots
from wave_lightning.analysis.sheets import fft_velocity, impulse_sheets, track_velocity
from wave_lightning.cli import main
from wave_lightning.nn import WaveSheetRNN
from wave_lightning.nn.sheet import STEPS


def impulse(steps: int, input_size: int = 1) -> torch.Tensor:
    """One unit pulse on every input at t = 0, then silence (batch of 2)."""
    x = torch.zeros(2, steps, input_size)
    x[:, 0] = 1.0
    return x


def sheets(layer: WaveSheetRNN, x: torch.Tensor) -> torch.Tensor:
    """The layer's states as (B, T, n_ch, H, W)."""
    states, last = layer(x)
    assert torch.equal(last, states[:, -1])
    return states.view(*x.shape[:2], layer.n_ch, layer.height, layer.width)


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("direction", [*STEPS, "cycle"])
def test_shift_init_carries_an_impulse_one_unit_per_step_wrapping_undamped(
    direction, activation, impl
):
    height, width, n_ch, steps = 4, 5, 5, 13
    layer = WaveSheetRNN(
        1, height, width, n_ch, direction=direction, activation=activation, impl=impl
    )
    cycle = list(STEPS.values())
    moves = [STEPS[direction] if direction != "cycle" else cycle[c % 4] for c in range(n_ch)]
    states = sheets(layer, impulse(steps))
    for t in range(steps):
        for c, (dy, dx) in enumerate(moves):
            expected = torch.zeros(height, width)
            expected[(dy * t) % height, (dx * t) % width] = 1.0
            assert torch.equal(states[:, t, c], expected.expand(2, height, width)), (t, c)


def test_wider_kernel_still_moves_one_unit_per_step():
    states = sheets(WaveSheetRNN(1, 6, 7, 2, kernel_size=5, direction="down"), impulse(9))
    for t in range(9):
        assert torch.equal(states[0, t, :, t % 6, 0], torch.ones(2)) and states[0, t].sum() == 2


def test_identity_init_holds_an_impulse_still():
    states = sheets(WaveSheetRNN(3, 4, 4, 3, recurrent_init="identity"), impulse(6, 3))
    expected = torch.zeros(3, 4, 4)
    expected[:, 0, 0] = 3.0  # every input dim feeds unit (0, 0) of every channel
    assert all(torch.equal(states[1, t], expected) for t in range(6))


def test_inits_set_the_described_weights():
    layer = WaveSheetRNN(2, 3, 3, 2, recurrent_init="shift", direction="up")
    weight = layer.recurrent.conv.weight
    assert weight.sum() == 2 and weight[0, 0, 2, 1] == 1 and weight[1, 1, 2, 1] == 1
    assert not layer.recurrent.conv.bias.any() and not layer.input.bias.any()
    single = torch.zeros(18, 2)
    single[[0, 9]] = 1.0
    assert torch.equal(layer.input.weight, single)
    normal = WaveSheetRNN(2, 3, 3, input_init="normal", recurrent_init="random")
    assert 0 < normal.input.weight.std() < 0.01
    bound = 1 / 3  # Conv2d default: uniform in +-1/sqrt(C K K)
    assert normal.recurrent.conv.weight.abs().max() <= bound and normal.recurrent.conv.bias.any()


FORMS = [
    dict(height=3, width=4, n_ch=1, recurrent_init="shift", activation="relu"),
    dict(height=4, width=3, n_ch=2, recurrent_init="random", activation="tanh"),
    dict(height=5, width=5, n_ch=3, kernel_size=5, recurrent_init="random", input_init="default"),
    dict(height=3, width=6, n_ch=4, recurrent_init="identity", direction="cycle",
         activation="identity", input_init="normal"),
]  # fmt: skip


@pytest.mark.parametrize("give_h0", [False, True])
@pytest.mark.parametrize("kwargs", FORMS)
def test_fast_form_equals_reference_in_values_and_gradients(kwargs, give_h0):
    torch.manual_seed(0)
    layer = WaveSheetRNN(2, **kwargs).double()
    with torch.no_grad():  # make every parameter matter to the gradients
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    h0 = torch.randn(3, layer.hidden_size, dtype=torch.float64).relu() if give_h0 else None

    def run(impl: str) -> list[torch.Tensor]:
        copied = copy.deepcopy(layer)
        copied.impl = impl
        inputs = [t if t is None else t.clone().requires_grad_() for t in (x, h0)]
        states, last = copied(*inputs)
        weights = torch.randn(states.shape, generator=torch.Generator().manual_seed(1)).double()
        loss = (states * weights).sum() + last.square().sum()
        wrt = [t for t in inputs if t is not None] + list(copied.parameters())
        return [states, last, *torch.autograd.grad(loss, wrt)]

    for got, want in zip(run("fast"), run("reference"), strict=True):
        torch.testing.assert_close(got, want)


def test_auto_runs_the_reference_form_above_the_dense_limit():
    assert WaveSheetRNN(1, 4, 4).resolve_impl(torch.zeros(1, 1, 1)) == "fast"
    big = WaveSheetRNN(1, 65, 64)
    assert big.resolve_impl(torch.zeros(1, 1, 1)) == "reference"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(height=0), "height must be a positive integer, got 0"),
        (dict(width=2.5), "width must be a positive integer, got 2.5"),
        (dict(n_ch=0), "n_ch must be a positive integer, got 0"),
        (dict(kernel_size=4), "kernel_size must be odd and >= 3, got 4"),
        (dict(kernel_size=1), "kernel_size must be odd and >= 3, got 1"),
        (dict(height=2), "height (2) and width (4) must be at least kernel_size (3)"),
        (dict(direction="north"), "direction='north' is not allowed; choose one of right, down, "
         "left, up, cycle"),
        (dict(recurrent_init="eye"), "recurrent_init='eye' is not allowed; choose one of shift, "
         "identity, random"),
        (dict(input_init="one"), "input_init='one' is not allowed; choose one of single, "
         "normal, default"),
        (dict(activation="gelu"), "activation='gelu' is not allowed; choose one of relu, tanh, "
         "identity"),
        (dict(impl="cpp"), "WaveSheetRNN has no impl='cpp' form"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    args = dict(input_size=1, height=4, width=4) | kwargs
    with pytest.raises(ValueError) as error:
        WaveSheetRNN(**args)
    assert str(error.value) == message


def test_wrong_input_width_is_refused():
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time >= 1, 2\)"):
        WaveSheetRNN(2, 3, 3)(torch.zeros(1, 4, 3))


def test_the_sheet_config_trains_on_the_copy_task(tmp_path):
    main([
        "fit", "--config", str(ROOT / "conf/data/copy.yaml"),
        "--config", str(ROOT / "conf/model/wsheet.yaml"),
        "--model.layer.init_args.height", "4", "--model.layer.init_args.width", "4",
        "--data.delay", "2", "--data.batch_size", "4", "--data.train_batches", "2",
        "--data.val_size", "4", "--data.test_size", "4",
        "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path),
    ])  # fmt: skip
    assert list(tmp_path.rglob("*.ckpt"))


def test_impulse_tracking_measures_each_channels_velocity():
    layer = WaveSheetRNN(1, 5, 6, 4, direction="cycle", activation="identity")
    velocity = track_velocity(impulse_sheets(layer, 8))
    moves = [(v.vy, v.vx, v.speed, v.direction) for v in velocity]
    expected = [(0, 1, 1, 0), (1, 0, 1, 270), (0, -1, 1, 180), (-1, 0, 1, 90)]
    for got, want in zip(moves, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)
    still = track_velocity(impulse_sheets(WaveSheetRNN(1, 4, 4, recurrent_init="identity"), 5))
    assert (still[0].vy, still[0].vx, still[0].speed) == pytest.approx((0, 0, 0), abs=1e-9)
    silent = track_velocity(torch.zeros(4, 1, 3, 3))[0]
    assert math.isnan(silent.vy) and math.isnan(silent.speed)


def test_the_3d_fft_plane_gives_each_shift_channels_velocity_and_none_for_identity():
    layer = WaveSheetRNN(1, 6, 6, 4, direction="cycle")
    moves = [(v.vy, v.vx, v.speed, v.direction) for v in fft_velocity(impulse_sheets(layer, 7))]
    expected = [(0, 1, 1, 0), (1, 0, 1, 270), (0, -1, 1, 180), (-1, 0, 1, 90)]
    for got, want in zip(moves, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)
    still = fft_velocity(impulse_sheets(WaveSheetRNN(1, 4, 4, recurrent_init="identity"), 5))[0]
    assert (still.vy, still.vx) == pytest.approx((0, 0), abs=1e-9)
    assert math.isnan(fft_velocity(torch.zeros(4, 1, 3, 3))[0].speed)


def test_the_3d_fft_plane_finds_a_fractional_velocity_of_a_smooth_moving_blob():
    # a periodic blob moving (vy, vx) = (0.5, -0.75) units/step on a 16 x 20 torus
    t = torch.arange(24.0)[:, None, None]
    y, x = torch.arange(16.0)[None, :, None], torch.arange(20.0)[None, None, :]
    phase_y = 2 * math.pi * (y - 0.5 * t) / 16
    phase_x = 2 * math.pi * (x + 0.75 * t) / 20
    blob = torch.exp(2 * torch.cos(phase_y) + 2 * torch.cos(phase_x))
    velocity = fft_velocity(blob[:, None])[0]
    assert (velocity.vy, velocity.vx) == pytest.approx((0.5, -0.75), abs=0.02)
    # centre-of-mass tracking agrees on this rigid motion
    tracked = track_velocity(blob[:, None])[0]
    assert (tracked.vy, tracked.vx) == pytest.approx((0.5, -0.75), abs=1e-6)


def test_sheet_snapshots_draw_one_panel_per_channel_and_time():
    sheets_ = torch.rand(6, 3, 4, 5)
    fig = plot_sheet_snapshots(sheets_, [0, 2, 5], "t")
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(images) == 9
    assert images[4].get_title() == "channel 1, t = 2"
    assert (images[4].images[0].get_array() == sheets_[2, 1].numpy()).all()


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_frozen_parts_get_no_gradient_and_the_rest_does(impl):
    layer = WaveSheetRNN(2, 3, 3, 2, freeze_recurrent=True, input_init="normal", impl=impl)
    layer(torch.rand(2, 5, 2))[0].sum().backward()
    assert layer.recurrent.conv.weight.grad is None and layer.recurrent.conv.bias.grad is None
    assert layer.input.weight.grad is not None and layer.input.weight.grad.abs().sum() > 0
