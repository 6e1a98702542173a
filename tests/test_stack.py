"""Deep residual stacks: every form equals the reference, one block equals the plain model, and
the stack configs train on each kind of task through the CLI."""

import copy
import os
import subprocess
import sys
from functools import partial

import pytest
import torch
from torch import nn

from tests.helpers import ROOT
from tests.test_fast_recurrence import set_impl
from wave_lightning.analysis.report import analyze
from wave_lightning.cli import main
from wave_lightning.fit import WaveCLI
from wave_lightning.models import ResidualStack, SequenceModel
from wave_lightning.nn import GRU, IRNN, LSTM, LocalRNN, WaveRNN, WaveSheetRNN
from wave_lightning.tasks import load_task


def randn(*shape: int) -> torch.Tensor:
    """Standard normal float64 values: every stack here computes in float64 (exact to round-off)."""
    return torch.randn(*shape, dtype=torch.float64)


# (layer builder, form) for every CPU form beyond the reference that computes in float64;
# each layer has 6 units
FORMS = [
    (partial(WaveRNN, n_hid=3, n_ch=2, recurrent_init="random", input_init="default"), "fast"),
    (partial(WaveRNN, n_hid=3, n_ch=2, recurrent_init="random", input_init="default"), "cpp"),
    (partial(LocalRNN, n_hid=3, n_ch=2, recurrent_init="random", input_init="default"), "fast"),
    (partial(LocalRNN, n_hid=3, n_ch=2, recurrent_init="random", input_init="default"), "cpp"),
    (partial(IRNN, hidden_size=6, recurrent_init="random", input_init="default"), "fast"),
]
FORM_IDS = ["wave-fast", "wave-cpp", "local-fast", "local-cpp", "irnn-fast"]
# d_model 6: each layer's output, in the layout its form stores it, goes on to the norm, the
# residual or (bare) the next layer; d_model 8: a Linear projects it first, so that dropout
# draws its mask on the same layout in every form (a mask follows the memory order)
BLOCKS = {
    "prenorm-layer": {"norm": "layer", "prenorm": True},
    "postnorm-batch-dropout-projected": {
        "norm": "batch",
        "prenorm": False,
        "dropout": 0.25,
        "d_model": 8,
    },
    "bare": {"norm": "none", "residual": False},
}


def set_forms(stack: ResidualStack, impl: str) -> ResidualStack:
    """Every layer of the stack runs the form `impl`."""
    for block in stack.blocks:
        set_impl(block.layer, impl)
    return stack


def outputs_and_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Output, pooled output and the gradients of a loss on every step w.r.t. x and every
    parameter, under a fixed seed (the same dropout masks in every call)."""
    x = x.detach().requires_grad_()
    torch.manual_seed(3)
    output, pooled = model(x)
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    loss = (output * weights).sum() + pooled.square().sum()
    return [output, pooled, *torch.autograd.grad(loss, [x, *model.parameters()])]


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("block", list(BLOCKS.values()), ids=list(BLOCKS))
@pytest.mark.parametrize(("make_layer", "impl"), FORMS, ids=FORM_IDS)
def test_every_form_equals_the_reference_through_a_two_layer_stack(make_layer, impl, block):
    torch.manual_seed(0)
    stack = ResidualStack(3, make_layer, **({"d_model": 6, "n_layers": 2} | block)).double()
    x = randn(4, 7, 3)
    expected = outputs_and_grads(set_forms(copy.deepcopy(stack), "reference"), x)
    assert_all_close(outputs_and_grads(set_forms(stack, impl), x), expected)
    assert expected[0].abs().max() > 0.1 and all(g.abs().max() > 0 for g in expected[2:])


@pytest.mark.parametrize("read_from", ["last", "all"])
@pytest.mark.parametrize(("make_layer", "impl"), FORMS, ids=FORM_IDS)
def test_a_stack_of_one_layer_equals_the_plain_model(make_layer, impl, read_from):
    torch.manual_seed(0)
    plain = SequenceModel(make_layer(3), output_size=2, read_from=read_from).double()
    one = dict(n_layers=1, encoder=False, norm="none", residual=False, pool="last")
    stack = ResidualStack(3, make_layer, d_model=plain.layer.hidden_size, **one)
    stacked = SequenceModel(stack, output_size=2, read_from=read_from).double()
    weights = plain.state_dict().items()
    stacked.load_state_dict(
        {k.replace("layer.", "layer.blocks.0.layer.", 1): v for k, v in weights}
    )
    set_impl(plain.layer, impl)
    set_forms(stack, impl)
    x = randn(4, 6, 3)

    def values_and_grads(model: SequenceModel) -> list[torch.Tensor]:
        prediction = model(x)
        seeded = torch.Generator().manual_seed(1)
        weights = torch.randn(prediction.shape, generator=seeded, dtype=x.dtype)
        return [prediction, *torch.autograd.grad((prediction * weights).sum(), model.parameters())]

    assert_all_close(values_and_grads(stacked), values_and_grads(plain))


@pytest.mark.parametrize(
    "make_layer",
    [
        partial(GRU, hidden_size=5),
        partial(LSTM, hidden_size=4),
        partial(WaveSheetRNN, height=3, width=3, n_ch=2),
    ],
    ids=["gru", "lstm", "sheet"],
)
def test_gated_and_sheet_layers_stack_as_encoder_plus_projected_block(make_layer):
    torch.manual_seed(0)
    stack = ResidualStack(3, make_layer, d_model=4, n_layers=1, norm="none").double()
    x = randn(2, 5, 3)
    output, last = stack(x)
    block = stack.blocks[0]
    encoded = x @ stack.encoder.weight.T + stack.encoder.bias
    states = block.layer(encoded)[0]
    if isinstance(block.project, nn.Linear):
        states = states @ block.project.weight.T + block.project.bias
    torch.testing.assert_close(output, encoded + states)
    torch.testing.assert_close(last, output[:, -1])
    assert isinstance(block.project, nn.Linear) == (block.layer.hidden_size != 4)


@pytest.mark.parametrize("mixing", ["gelu", "glu"])
def test_mixing_follows_each_layer_with_gelu_and_a_linear_or_a_glu(mixing):
    torch.manual_seed(0)
    stack = ResidualStack(3, RING, d_model=4, n_layers=1, norm="none", mixing=mixing).double()
    x = randn(2, 5, 3)
    block = stack.blocks[0]
    encoded = x @ stack.encoder.weight.T + stack.encoder.bias
    linear = block.project[1]
    mixed = torch.nn.functional.gelu(block.layer(encoded)[0]) @ linear.weight.T + linear.bias
    if mixing == "glu":  # the first half gated by the sigmoid of the second
        mixed = mixed[..., :4] * torch.sigmoid(mixed[..., 4:])
    torch.testing.assert_close(stack(x)[0], encoded + mixed)
    assert linear.out_features == (8 if mixing == "glu" else 4)


def test_layer_and_batch_norm_normalise_each_step_and_each_feature():
    torch.manual_seed(0)
    x = randn(3, 5, 4)
    gru = partial(GRU, hidden_size=4)
    post = ResidualStack(4, gru, d_model=4, n_layers=1, encoder=False, prenorm=False).double()
    z = x + post.blocks[0].layer(x)[0]
    mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(post(x)[0], (z - mean) / (var + 1e-5).sqrt())
    pre = ResidualStack(4, gru, d_model=4, n_layers=1, encoder=False, norm="batch").double()
    normed = (x - x.mean((0, 1))) / (x.var((0, 1), unbiased=False) + 1e-5).sqrt()
    z = x + pre.blocks[0].layer(normed)[0]
    final = (z - z.mean((0, 1))) / (z.var((0, 1), unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(pre(x)[0], final)


def test_mean_pooling_is_the_mean_of_the_output_over_time():
    torch.manual_seed(0)
    stack = ResidualStack(2, partial(WaveRNN, n_hid=4, n_ch=2), d_model=8, pool="mean").double()
    output, pooled = stack(randn(3, 6, 2))
    torch.testing.assert_close(pooled, output.mean(1))
    assert not torch.allclose(pooled, output[:, -1])


def test_each_layer_is_built_and_initialised_on_its_own():
    torch.manual_seed(0)
    stack = ResidualStack(1, partial(IRNN, hidden_size=5, recurrent_init="random"), 5, 3)
    weights = [block.layer.recurrent.weight for block in stack.blocks]
    assert len({id(w) for w in weights}) == 3
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert stack.blocks[0].layer.input_size == 5 and stack.hidden_size == 5


def test_a_stack_reads_like_one_dense_layer_to_the_wave_analysis():
    stack = ResidualStack(2, partial(WaveRNN, n_hid=4, n_ch=2), d_model=6)
    result = analyze(stack, torch.rand(4, 9, 2), onset_examples=16)
    assert result.states.shape == (4, 9, 1, 6)
    assert result.onset is not None


RING = partial(WaveRNN, n_hid=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 0}, "d_model must be a positive integer, got 0"),
        ({"n_layers": 0}, "n_layers must be a positive integer, got 0"),
        ({"norm": "group"}, "norm='group' is not allowed; choose one of layer, batch, none"),
        ({"pool": "max"}, "pool='max' is not allowed; choose one of last, mean"),
        ({"mixing": "relu"}, "mixing='relu' is not allowed; choose one of none, gelu, glu"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        (
            {"encoder": False},
            "residual=True with encoder=False needs input_size == d_model, "
            "got input_size=2, d_model=4",
        ),
        ({"layer": WaveRNN(4, 4)}, "layer must build a layer from its input size .*WaveRNN"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualStack(**({"input_size": 2, "layer": RING, "d_model": 4} | kwargs))


def test_bad_inputs_are_refused_in_one_line():
    stack = ResidualStack(2, RING, d_model=4)
    with pytest.raises(ValueError, match="h0 must be None"):
        stack(torch.zeros(1, 3, 2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time >= 1, 2\)"):
        stack(torch.zeros(1, 3, 5))


TINY_COPY = [
    "--data.delay", "2", "--data.memory_length", "2", "--data.batch_size", "4",
    "--data.train_batches", "2", "--data.val_size", "4", "--data.test_size", "4",
]  # fmt: skip
SMALL_STACK = ["--model.layer.init_args.d_model", "6", "--model.layer.init_args.n_layers", "2"]


def test_the_wave_stack_config_trains_on_the_copy_task_and_loads_back(tmp_path, torch_threads):
    torch_threads(1)
    args = ["fit", "--config", str(ROOT / "conf/data/copy.yaml")]
    args += ["--config", str(ROOT / "conf/model/stack_wrnn.yaml"), *SMALL_STACK, *TINY_COPY]
    args += ["--model.layer.init_args.layer.init_args.n_hid", "3", "--trainer.max_steps", "2"]
    args += ["--model.layer.init_args.layer.init_args.impl", "fast"]
    main([*args, "--trainer.default_root_dir", str(tmp_path)])
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    inner = saved["hyper_parameters"]["layer"]["init_args"]["layer"]["init_args"]
    assert inner["n_hid"] == 3 and "impl" not in inner  # the form is the config's choice
    task = load_task(tmp_path / "checkpoints" / "last.ckpt")
    stack = task.model.layer
    assert isinstance(stack, ResidualStack) and len(stack.blocks) == 2
    assert [type(b.layer).__name__ for b in stack.blocks] == ["WaveRNN", "WaveRNN"]
    assert stack.blocks[1].layer.input_size == 6 and stack.blocks[1].layer.n_hid == 3
    x = torch.randn(2, 8, stack.input_size)
    assert task.model(x).shape == (2, 8, task.hparams.output_size)


@pytest.mark.parametrize(
    ("data", "model", "layer_args"),
    [
        pytest.param("mnist1d", "stack_gru", ["hidden_size", "5"], marks=pytest.mark.slow),
        ("adding", "stack_irnn", ["hidden_size", "6"]),
        ("copy", "stack_lstm", ["hidden_size", "4"]),
    ],
)
def test_the_stack_configs_run_on_every_kind_of_task(
    data, model, layer_args, tmp_path, torch_threads
):
    torch_threads(1)
    args = ["fit", "--config", str(ROOT / f"conf/data/{data}.yaml")]
    args += ["--config", str(ROOT / f"conf/model/{model}.yaml"), *SMALL_STACK]
    args += [f"--model.layer.init_args.layer.init_args.{layer_args[0]}", layer_args[1]]
    args += ["--model.layer.init_args.dropout", "0.1", "--model.layer.init_args.pool", "mean"]
    args += {"mnist1d": ["--data.batch_size", "8"], "adding": ["--data.seq_len", "6"]}.get(
        data, TINY_COPY
    )
    args += ["--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path)]
    cli = WaveCLI(args=args)
    assert cli.trainer.global_step == 1
    assert all(torch.isfinite(v) for v in cli.trainer.callback_metrics.values())
    assert "test/loss" in cli.trainer.callback_metrics


TRITON_CHECK = """
import copy
from functools import partial
from tests.test_stack import BLOCKS, assert_all_close, outputs_and_grads, randn, set_forms
from wave_lightning.models import ResidualStack
from wave_lightning.nn import WaveRNN
ring = partial(WaveRNN, n_hid=3, n_ch=2, recurrent_init="random", input_init="default")
for block in BLOCKS.values():
    stack = ResidualStack(3, ring, **({"d_model": 6, "n_layers": 2} | block)).double()
    x = randn(2, 5, 3)
    expected = outputs_and_grads(set_forms(copy.deepcopy(stack), "reference"), x)
    assert_all_close(outputs_and_grads(set_forms(stack, "triton"), x), expected)
print("the triton form agrees through a stack")
"""


@pytest.mark.slow
def test_the_triton_form_equals_the_reference_through_a_stack_in_the_cpu_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the triton form agrees through a stack" in done.stdout
