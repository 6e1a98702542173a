"""coRNN and LEM: each equals a per-step transcription of its published equations (float64,
values and gradients), has the published initialisation and parameter count, rejects bad
hyper-parameters, and trains through the CLI."""

import csv
import math

import pytest
import torch
import yaml
from torch import Tensor

from tests.helpers import ROOT
from wave_lightning.cli import main
from wave_lightning.nn import LEM, CoRNN


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """Small tensors gain nothing from threads; on a shared machine threads only spin."""
    torch_threads(1)


def cornn_reference(layer: CoRNN, x: Tensor, y: Tensor) -> Tensor:
    """coRNN's IMEX scheme (Rusch & Mishra 2021, eq. 3), one step at a time, z_0 = 0."""
    V, b = layer.input.weight, layer.input.bias
    W, W_cal = layer.recurrent_y.weight, layer.recurrent_z.weight
    dt, gamma, eps = layer.dt, layer.gamma, layer.epsilon
    z = torch.zeros_like(y)
    ys = []
    for n in range(x.shape[1]):
        u = x[:, n]
        z = z + dt * (torch.tanh(y @ W.T + z @ W_cal.T + u @ V.T + b) - gamma * y - eps * z)
        y = y + dt * z
        ys.append(y)
    return torch.stack(ys, 1)


def lem_reference(layer: LEM, x: Tensor, y: Tensor) -> Tensor:
    """LEM (Rusch et al. 2022, eq. 3), one step at a time, z_0 = 0, with the published code's
    biases on every map."""
    V1, V2, Vz, Vy = layer.input.weight.chunk(4)
    c1, c2, cz, cy = layer.input.bias.chunk(4)
    W1, W2, Wz = layer.recurrent.weight.chunk(3)
    d1, d2, dz = layer.recurrent.bias.chunk(3)
    Wy, dy = layer.recurrent_z.weight, layer.recurrent_z.bias
    z = torch.zeros_like(y)
    ys = []
    for n in range(x.shape[1]):
        u = x[:, n]
        dt_n = layer.dt * torch.sigmoid(y @ W1.T + d1 + u @ V1.T + c1)
        dt_bar_n = layer.dt * torch.sigmoid(y @ W2.T + d2 + u @ V2.T + c2)
        z = (1 - dt_n) * z + dt_n * torch.tanh(y @ Wz.T + dz + u @ Vz.T + cz)
        y = (1 - dt_bar_n) * y + dt_bar_n * torch.tanh(z @ Wy.T + dy + u @ Vy.T + cy)
        ys.append(y)
    return torch.stack(ys, 1)


LAYERS = {
    "cornn": (lambda: CoRNN(3, 5, dt=0.3, gamma=1.3, epsilon=0.7), cornn_reference),
    "cornn-split": (
        lambda: CoRNN(3, 5, dt=0.1, gamma=2.7, epsilon=4.7, init="split"),
        cornn_reference,
    ),
    "lem": (lambda: LEM(3, 5, dt=0.8), lem_reference),
}


@pytest.mark.parametrize("given_h0", [False, True])
@pytest.mark.parametrize("name", LAYERS)
def test_layer_equals_its_published_equations_in_values_and_gradients(name, given_h0):
    make, reference = LAYERS[name]
    torch.manual_seed(0)
    layer = make().double()
    x = torch.randn(4, 9, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True) if given_h0 else None
    output, h_n = layer(x, h0)
    expected = reference(layer, x, h0 if given_h0 else x.new_zeros(4, 5))
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, expected[:, -1], rtol=1e-12, atol=1e-12)
    assert h_n.data_ptr() != output.data_ptr()  # a tensor of its own

    weights = torch.randn_like(output), torch.randn_like(h_n)
    inputs = [x, *layer.parameters(), *([h0] if given_h0 else [])]

    def loss(states: Tensor, last: Tensor) -> Tensor:
        return (states * weights[0]).sum() + (last * weights[1]).sum()

    grads = torch.autograd.grad(loss(output, h_n), inputs)
    expected_grads = torch.autograd.grad(loss(expected, expected[:, -1]), inputs)
    assert len(grads) == len(list(layer.parameters())) + 1 + given_h0
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert expected_grad.abs().max() > 0
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_cornn_without_weights_is_the_damped_oscillator_of_its_scheme():
    """W = W_z = V = b = 0, y_0 = 1: z_n = (1 - dt eps) z_{n-1} - dt gamma y_{n-1} = 0.95 z - 0.4 y,
    y_n = y_{n-1} + 0.1 z_n, worked by hand."""
    layer = CoRNN(1, 1, dt=0.1, gamma=4.0, epsilon=0.5).double()
    for parameter in layer.parameters():
        torch.nn.init.zeros_(parameter)
    output, _ = layer(torch.zeros(1, 3, 1, dtype=torch.float64), torch.ones(1, 1).double())
    # z: -0.4, -0.764, -1.07924
    assert output.flatten().tolist() == pytest.approx([0.96, 0.8836, 0.775676], abs=1e-15)


def uniform_bound(tensor: Tensor) -> tuple[float, float]:
    """The largest |value| and sqrt(3) * std: both about the bound of a uniform (-a, a)."""
    return tensor.abs().max().item(), math.sqrt(3) * tensor.std().item()


def assert_uniform(tensors: list[Tensor], bound: float) -> None:
    values = torch.cat([t.detach().flatten() for t in tensors])
    largest, spread = uniform_bound(values)
    assert largest <= bound and largest > 0.98 * bound
    assert spread == pytest.approx(bound, rel=0.05)


def test_cornn_joint_init_is_one_linear_over_input_z_and_y():
    torch.manual_seed(0)
    layer = CoRNN(96, 128)
    assert layer.init == "joint"
    assert_uniform(list(layer.parameters()), 1 / math.sqrt(96 + 2 * 128))


def test_cornn_split_init_is_each_maps_own_linear_default():
    torch.manual_seed(0)
    layer = CoRNN(96, 128, init="split")
    assert_uniform([layer.input.weight, layer.input.bias], 1 / math.sqrt(96))
    assert_uniform([layer.recurrent_y.weight, layer.recurrent_z.weight], 1 / math.sqrt(128))
    assert layer.recurrent_y.bias is None and layer.recurrent_z.bias is None


def test_lem_init_is_uniform_in_one_over_sqrt_hidden_for_every_parameter():
    torch.manual_seed(0)
    layer = LEM(96, 128)
    assert layer.dt == 1.0
    assert_uniform(list(layer.parameters()), 1 / math.sqrt(128))
    assert_uniform([layer.input.weight], 1 / math.sqrt(128))  # not 1 / sqrt(input_size)


def build_layer(config: str, input_size: int) -> torch.nn.Module:
    """The layer of conf/experiment/<config>.yaml for inputs of width input_size."""
    spec = yaml.safe_load((ROOT / "conf/experiment" / f"{config}.yaml").read_text())
    layer = spec["model"]["init_args"]["layer"]
    cls = {"wave_lightning.nn.CoRNN": CoRNN, "wave_lightning.nn.LEM": LEM}[layer["class_path"]]
    return cls(input_size, **layer["init_args"])


def count(layer: torch.nn.Module, classes: int = 10) -> int:
    """Parameters of the layer and its linear readout, as the coRNN and LEM papers count."""
    return sum(p.numel() for p in layer.parameters()) + (layer.hidden_size + 1) * classes


@pytest.mark.parametrize(
    ("config", "input_size", "params"),
    [
        ("smnist_cornn", 1, 34_314),  # Table 2: 34k
        ("psmnist_cornn", 1, 34_314),
        ("nscifar10_cornn", 96, 46_474),
        ("smnist_lem", 1, 68_362),  # Table 2: 68k
        ("psmnist_lem", 1, 68_362),
        ("nscifar10_lem", 96, 117_002),
        ("mnist1d_cornn", 1, 5_194),  # about mnist1d_gru.yaml's 5.1k
        ("mnist1d_lem", 1, 5_092),
    ],
)
def test_experiment_parameter_counts(config, input_size, params):
    assert count(build_layer(config, input_size)) == params


def test_experiments_carry_the_published_hyper_parameters():
    def args(config: str) -> tuple:
        spec = yaml.safe_load((ROOT / "conf/experiment" / f"{config}.yaml").read_text())
        layer = spec["model"]["init_args"]["layer"]["init_args"]
        clip = spec["trainer"].get("gradient_clip_val")
        lr = spec["optimizer"]["init_args"]["lr"]
        return layer, lr, spec["data"]["init_args"]["batch_size"], clip

    cornn = {"hidden_size": 128, "init": "joint"}
    assert args("smnist_cornn") == (
        {**cornn, "dt": 0.042, "gamma": 2.7, "epsilon": 4.7},
        0.0021,
        120,
        None,
    )
    assert args("psmnist_cornn") == (
        {**cornn, "dt": 0.076, "gamma": 0.4, "epsilon": 8.0},
        0.0054,
        120,
        None,
    )
    assert args("nscifar10_cornn") == (
        {"hidden_size": 128, "init": "split", "dt": 0.034, "gamma": 1.3, "epsilon": 12.7},
        0.0075,
        100,
        None,
    )
    assert args("smnist_lem") == ({"hidden_size": 128, "dt": 0.21}, 0.0018, 128, 1.0)
    assert args("psmnist_lem") == ({"hidden_size": 128, "dt": 0.31}, 0.0073, 128, 1.1)
    assert args("nscifar10_lem") == ({"hidden_size": 128, "dt": 0.44}, 0.00322, 100, None)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CoRNN(1, 4, dt=0.0), "dt must be a number > 0.0, got 0.0"),
        (lambda: CoRNN(1, 4, dt=-0.1), "dt must be a number > 0.0"),
        (lambda: CoRNN(1, 4, dt=math.nan), "dt must be a number > 0.0"),
        (lambda: CoRNN(1, 4, dt="0.1"), "dt must be a number > 0.0, got '0.1'"),
        (lambda: CoRNN(1, 4, gamma=0), "gamma must be a number > 0.0, got 0"),
        (lambda: CoRNN(1, 4, epsilon=True), "epsilon must be a number > 0.0, got True"),
        (lambda: CoRNN(1, 4, init="xavier"), "init='xavier' is not allowed; choose one of joint"),
        (lambda: CoRNN(0, 4), "input_size must be a positive integer, got 0"),
        (lambda: LEM(1, 4, dt=1.5), r"dt must be a number in \(0.0, 1.0\], got 1.5"),
        (lambda: LEM(1, 4, dt=0), r"dt must be a number in \(0.0, 1.0\], got 0"),
        (lambda: LEM(1, 0), "hidden_size must be a positive integer, got 0"),
    ],
)
def test_bad_hyper_parameters_raise_one_line_value_errors(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cls", [CoRNN, LEM])
def test_bad_shapes_raise_value_errors(cls):
    layer = cls(2, 4)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time >= 1, 2\)"):
        layer(torch.zeros(3, 5, 1))
    with pytest.raises(ValueError, match=r"expected h0 of shape \(3, 4\), got \(3, 5\)"):
        layer(torch.zeros(3, 5, 2), torch.zeros(3, 5))


@pytest.mark.parametrize("model", ["cornn", "lem"])
def test_tiny_adding_fit_through_the_cli_lowers_the_loss(model, tmp_path):
    main(
        [
            "fit",
            "--config", str(ROOT / "conf/data/adding.yaml"),
            "--config", str(ROOT / f"conf/model/{model}.yaml"),
            "--model.layer.init_args.hidden_size", "8",
            "--model.layer.init_args.dt", "0.5",
            "--data.seq_len", "6", "--data.batch_size", "32", "--data.train_batches", "10",
            "--data.val_size", "64", "--data.test_size", "64",
            "--optimizer", "torch.optim.Adam", "--optimizer.lr", "0.03",
            "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path), "--seed_everything", "0",
        ]
    )  # fmt: skip
    (metrics,) = tmp_path.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    val = [float(r["val/mse"]) for r in rows if r.get("val/mse")]
    train = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(val) == 3 and len(train) == 30 and all(map(math.isfinite, val + train))
    assert sum(train[-5:]) < sum(train[:5])
    assert val[-1] < val[0], (train, val)
