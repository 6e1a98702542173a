"""The whole model (layer, readout, loss) in every form: equal to the reference, no full-size
copies at the layer boundary, and `impl` chosen by the config without touching checkpoints."""

import copy
from pathlib import Path

import pytest
import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from tests.helpers import cli, tiny_copy_args
from wave_lightning.models import SequenceModel
from wave_lightning.nn import IRNN, LocalRNN, WaveRNN
from wave_lightning.nn.kernels import cpp_ring

FORMS = [(WaveRNN, "fast"), (WaveRNN, "cpp"), (LocalRNN, "fast"), (LocalRNN, "cpp"), (IRNN, "fast")]
FORM_IDS = [f"{cls.__name__}-{impl}" for cls, impl in FORMS]


def make_layer(layer_class, impl: str, inputs: int = 3):
    """A small layer with random recurrent weights in the form `impl`."""
    if impl == "cpp" and not cpp_ring.available():
        pytest.skip("the C++ extension cannot be built here (see the warning)")
    if layer_class is IRNN:
        layer = IRNN(inputs, 10, recurrent_init="random")
    else:
        layer = layer_class(inputs, 5, 2, recurrent_init="random", input_init="normal")
    layer.impl = impl
    return layer


def outputs_and_grads(model: SequenceModel, impl: str, x, h0) -> list[torch.Tensor]:
    """The model's output and the gradients of a fixed random loss w.r.t. x, h0, parameters."""
    model = copy.deepcopy(model)
    model.layer.impl = impl
    inputs = [t if t is None else t.detach().clone().requires_grad_() for t in (x, h0)]
    out = model(*inputs)
    seeded = torch.Generator().manual_seed(1)
    weights = torch.randn(out.shape, generator=seeded, dtype=torch.float64).to(out.dtype)
    wrt = [t for t in inputs if t is not None] + list(model.parameters())
    return [out, *torch.autograd.grad((out * weights).sum(), wrt)]


@pytest.mark.parametrize("give_h0", [False, True], ids=["no-h0", "h0"])
@pytest.mark.parametrize("read_from", ["last", "all"])
@pytest.mark.parametrize("readout", ["linear", "mlp"])
@pytest.mark.parametrize(("layer_class", "impl"), FORMS, ids=FORM_IDS)
def test_every_form_equals_the_reference_through_the_model(
    layer_class, impl, readout, read_from, give_h0
):
    torch.manual_seed(0)
    layer = make_layer(layer_class, impl)
    model = SequenceModel(layer, 4, readout, read_from, mlp_hidden=6).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)  # batch 5: the C++ form pads it to 8
    h0 = torch.randn(5, layer.hidden_size, dtype=torch.float64).relu() if give_h0 else None
    expected = outputs_and_grads(model, "reference", x, h0)
    actual = outputs_and_grads(model, impl, x, h0)
    assert len(actual) == len(expected) == 2 + bool(give_h0) + len(list(model.parameters()))
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("layer_class", [WaveRNN, LocalRNN])
def test_the_cpp_readout_of_every_step_is_exact_for_every_split_of_the_batch(
    layer_class, threads, torch_threads
):
    # batch 19: padded to 5 vectors of float64 and cut into uneven slices, one per thread;
    # 13 outputs: blocks of output channels of every size in the fused readout
    torch_threads(threads)
    torch.manual_seed(0)
    model = SequenceModel(make_layer(layer_class, "cpp"), 13, "mlp", "all", 7).double()
    x = torch.randn(19, 9, 3, dtype=torch.float64)
    h0 = torch.randn(19, model.layer.hidden_size, dtype=torch.float64)
    expected = outputs_and_grads(model, "reference", x, h0)
    for got, want in zip(outputs_and_grads(model, "cpp", x, h0), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("read_from", ["last", "all"])
@pytest.mark.parametrize(("layer_class", "impl"), FORMS, ids=FORM_IDS)
def test_float32_through_the_model_stays_accurate_at_large_state_magnitudes(
    layer_class, impl, read_from
):
    # states up to about 1e6 (a huge last input; these inits scale inputs down), as in the
    # layer check of test_fast_recurrence
    torch.manual_seed(0)
    model = SequenceModel(make_layer(layer_class, impl), 4, "mlp", read_from, mlp_hidden=6)
    x = torch.randn(16, 12, 3, dtype=torch.float64)
    x[:, -1] *= 1e8
    truth = outputs_and_grads(copy.deepcopy(model).double(), "reference", x, None)
    with torch.no_grad():
        assert model.layer(x.float())[1].abs().max() > 1e5
    actual = outputs_and_grads(model, impl, x.float(), None)
    for got, want in zip(actual, truth, strict=True):
        assert ((got.double() - want).norm() / want.norm()).item() < 1e-5


def full_size_events(model: SequenceModel, x: torch.Tensor) -> list[str]:
    """Copies, fills and zeros of at least one (B, T, H) tensor's size in a training step."""
    size = x.shape[0] * x.shape[1] * model.layer.hidden_size
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x).square().sum().backward()
    names = ("aten::copy_", "aten::zeros", "aten::zero_", "aten::fill_", "aten::clone")
    found = []
    for event in prof.events():
        shapes = [s for s in event.input_shapes if s]
        if event.name in names and any(torch.Size(s).numel() >= size for s in shapes):
            found.append(f"{event.name}{shapes}")
    return found


@pytest.mark.parametrize("read_from", ["last", "all"])
@pytest.mark.parametrize(("layer_class", "impl"), FORMS[:4], ids=FORM_IDS[:4])
def test_the_ring_forms_neither_copy_nor_zero_a_full_size_tensor_at_the_boundary(
    layer_class, impl, read_from
):
    torch.manual_seed(0)
    x = torch.rand(16, 30, 3)  # whole vectors under AVX2 and AVX-512: the C++ form pads no batch
    model = SequenceModel(make_layer(layer_class, impl), 4, "mlp", read_from, mlp_hidden=6)
    assert full_size_events(model, x) == []
    model.layer.impl = "reference"  # the check can fail: the reference stacks and transposes
    assert full_size_events(model, x) != []


@pytest.mark.parametrize("inputs", [3, cpp_ring.WIDE_INPUT], ids=["narrow", "wide"])
@pytest.mark.parametrize(("layer_class", "impl"), FORMS, ids=FORM_IDS)
def test_a_layer_in_user_code_gives_contiguous_batch_first_states_and_input_gradient(
    layer_class, impl, inputs
):
    """As torch.nn.GRU(batch_first=True): the states, and the input gradient they send back
    from a loss of the user's own, are contiguous (B, T, H) and (B, T, I) and equal the
    reference's (float64, batch 5: the C++ form pads it; a wide input is projected before the
    C++ loop, a narrow one inside it)."""
    torch.manual_seed(0)
    layer = make_layer(layer_class, impl, inputs).double()
    x = torch.randn(5, 7, inputs, dtype=torch.float64)
    h0 = torch.randn(5, layer.hidden_size, dtype=torch.float64)
    results = {}
    for form in ("reference", impl):
        layer.impl = form
        leaves = [x.clone().requires_grad_(), h0.clone().requires_grad_()]
        states, last = layer(*leaves)
        loss = states.square().mean() + last.sum()
        results[form] = [states, *torch.autograd.grad(loss, [*leaves, *layer.parameters()])]
    states, grad_x = results[impl][:2]
    assert states.shape == (5, 7, layer.hidden_size) and states.is_contiguous()
    assert grad_x.shape == x.shape and grad_x.is_contiguous()
    for got, want in zip(results[impl], results["reference"], strict=True):
        torch.testing.assert_close(got, want)


def test_the_fast_forms_return_the_last_state_as_an_output_of_their_own():
    x = torch.rand(4, 6, 3)
    for layer_class, impl in FORMS:
        states, last = make_layer(layer_class, impl)(x)
        assert "Select" not in last.grad_fn.name(), (layer_class, impl)
        torch.testing.assert_close(last, states[:, -1], rtol=0, atol=0)


@pytest.mark.parametrize(("layer_class", "impl"), FORMS, ids=FORM_IDS)
def test_last_state_alone_equals_the_layers_second_output_in_values_and_gradients(
    layer_class, impl
):
    """What SequenceModel reads for read_from="last" (the C++ form then writes no batch-first
    states), against the layer's own output, float64."""
    torch.manual_seed(0)
    layer = make_layer(layer_class, impl).double()
    x, h0 = torch.randn(5, 7, 3, dtype=torch.float64), torch.randn(5, layer.hidden_size).double()
    results = []
    for read in (lambda *a: layer(*a)[1], layer.last_state):
        leaves = [x.clone().requires_grad_(), h0.clone().requires_grad_()]
        last = read(*leaves)
        results.append(
            [last, *torch.autograd.grad(last.square().sum(), [*leaves, *layer.parameters()])]
        )
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


def recorded_impl(run: Path) -> str:
    config = yaml.safe_load((run / "config.yaml").read_text())
    return config["model"]["init_args"]["layer"]["init_args"]["impl"]


@pytest.mark.slow
def test_impl_is_a_config_choice_and_a_checkpoint_resumes_under_another_form(tmp_path):
    tiny = [*tiny_copy_args(delay=2), "--data.batch_size", "8", "--data.train_batches", "3"]
    tiny += ["--data.val_size", "8", "--test_after_fit", "false"]
    first = tmp_path / "reference"
    done = cli([*tiny, "--model.init_args.layer.init_args.impl", "reference",
                "--trainer.max_steps", "2", "--trainer.default_root_dir", str(first)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert recorded_impl(first) == "reference"
    checkpoint = torch.load(first / "checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert not [key for key in checkpoint["state_dict"] if "impl" in key]
    assert "impl" not in checkpoint["hyper_parameters"]["layer"]["init_args"]

    form = tmp_path / "fast.yaml"  # the other form from a YAML file
    form.write_text("model:\n  init_args:\n    layer:\n      init_args:\n        impl: fast\n")
    second = tmp_path / "fast"
    resumed = cli([*tiny, "--config", str(form), "--trainer.max_steps", "4",
                   "--ckpt_path", str(first / "checkpoints/last.ckpt"),
                   "--trainer.default_root_dir", str(second)])  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    assert recorded_impl(second) == "fast"
    assert torch.load(second / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 4


def test_a_bad_impl_in_the_config_is_a_one_line_error(tmp_path):
    bad = cli([*tiny_copy_args(delay=2), "--model.init_args.layer.init_args.impl", "fastest",
               "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert bad.returncode != 0
    assert "impl='fastest' is not allowed; choose one of auto, reference" in bad.stderr
    assert not list(tmp_path.iterdir())
