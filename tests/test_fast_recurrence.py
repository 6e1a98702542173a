"""The fast recurrence forms equal the reference loop in outputs and in every gradient."""

import copy
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, path_with_fake
from wave_lightning.nn import IRNN, LocalRNN, WaveRNN
from wave_lightning.nn.kernels import cpp_ring


def set_impl(layer, impl: str) -> None:
    """layer.impl = impl, skipping the test where the C++ form cannot be built."""
    if impl == "cpp" and not cpp_ring.available():
        pytest.skip("the C++ extension cannot be built here (see the warning)")
    layer.impl = impl


def outputs_and_grads(layer, impl: str, x: torch.Tensor, h0: torch.Tensor | None):
    """States, last state and the gradients of a fixed random loss w.r.t. x, h0, parameters."""
    set_impl(layer, impl)
    states, last = layer(x, h0)
    seeded = torch.Generator().manual_seed(1)
    weights = torch.randn(states.shape, generator=seeded, dtype=torch.float64).to(x.dtype)
    loss = (states * weights).sum() + last.square().sum()
    wrt = (
        [x] + ([h0] if h0 is not None else []) + [p for p in layer.parameters() if p.requires_grad]
    )
    return [states, last, *torch.autograd.grad(loss, wrt)]


def assert_forms_agree(
    layer, batch: int, steps: int, give_h0: bool, dtype=torch.float64, tol=None, impl="fast"
):
    """`impl` in `dtype` equals the reference computed in float64 (exact to round-off, so a
    float32 check measures the form's own error, not the float32 reference's)."""
    torch.manual_seed(0)
    x = torch.randn(batch, steps, layer.input_size, dtype=torch.float64)
    h0 = torch.randn(batch, layer.hidden_size, dtype=torch.float64).relu() if give_h0 else None

    def run(form: str, precision: torch.dtype) -> list[torch.Tensor]:
        inputs = [t if t is None else t.detach().to(precision).requires_grad_() for t in (x, h0)]
        return outputs_and_grads(copy.deepcopy(layer).to(precision), form, *inputs)

    expected = run("reference", torch.float64)
    actual = run(impl, dtype)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got.double(), want, **(tol or {}))


# the CPU forms of each layer, beyond the reference
RING_FORMS = [(WaveRNN, "fast"), (WaveRNN, "cpp"), (LocalRNN, "fast"), (LocalRNN, "cpp")]
RING_IDS = [f"{cls.__name__}-{impl}" for cls, impl in RING_FORMS]


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("init", ["shift", "identity", "random"])
@pytest.mark.parametrize("input_init", ["single", "default"])
@pytest.mark.parametrize("impl", ["fast", "cpp"])
def test_wave_fast_forms_equal_reference_for_every_init_and_activation(
    impl, init, activation, input_init
):
    layer = WaveRNN(2, 6, 3, recurrent_init=init, input_init=input_init, activation=activation)
    assert_forms_agree(layer, batch=3, steps=7, give_h0=True, impl=impl)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("n_ch", [1, 4, 9])
@pytest.mark.parametrize("n_hid", [5, 8])
@pytest.mark.parametrize(("layer_class", "impl"), RING_FORMS, ids=RING_IDS)
def test_ring_fast_forms_equal_reference_for_kernels_channels_and_ring_sizes(
    layer_class, impl, kernel_size, n_ch, n_hid
):
    layer = layer_class(3, n_hid, n_ch, kernel_size=kernel_size, recurrent_init="random")
    assert_forms_agree(layer, batch=2, steps=5, give_h0=True, impl=impl)


@pytest.mark.parametrize("give_h0", [True, False])
@pytest.mark.parametrize("batch", [1, 4, 45])  # 45: the C++ loop's full chunks and its tail
@pytest.mark.parametrize("steps", [1, 9])
@pytest.mark.parametrize(("layer_class", "impl"), RING_FORMS, ids=RING_IDS)
def test_ring_fast_forms_equal_reference_for_h0_batch_and_length(
    layer_class, impl, give_h0, batch, steps
):
    layer = layer_class(1, 7, 2, recurrent_init="random", input_init="normal", activation="tanh")
    assert_forms_agree(layer, batch=batch, steps=steps, give_h0=give_h0, impl=impl)


@pytest.mark.parametrize(
    "frozen",
    [
        {"freeze_recurrent": True},
        {"freeze_input": True},
        {"freeze_recurrent": True, "freeze_input": True},
    ],
)
@pytest.mark.parametrize(
    ("layer_class", "impl"), [*RING_FORMS, (IRNN, "fast")], ids=[*RING_IDS, "IRNN-fast"]
)
def test_fast_forms_equal_reference_with_frozen_parts(layer_class, impl, frozen):
    layer = layer_class(2, 6, recurrent_init="random", **frozen)
    assert_forms_agree(layer, batch=2, steps=6, give_h0=True, impl=impl)


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("init", ["shift", "identity", "random"])
@pytest.mark.parametrize(("batch", "give_h0"), [(1, False), (3, True)])
def test_dense_fast_form_equals_reference(init, activation, batch, give_h0):
    layer = IRNN(2, 9, recurrent_init=init, input_init="default", activation=activation)
    assert_forms_agree(layer, batch=batch, steps=6, give_h0=give_h0)


@pytest.mark.parametrize(
    ("make_layer", "impl", "batch"),
    [
        (lambda: WaveRNN(2, 16, 4, recurrent_init="random"), "fast", 5),
        (lambda: WaveRNN(2, 16, 4, recurrent_init="random"), "cpp", 75),
        (lambda: LocalRNN(2, 9, 3, kernel_size=5, recurrent_init="random"), "fast", 5),
        (lambda: LocalRNN(2, 9, 3, kernel_size=5, recurrent_init="random"), "cpp", 21),
        (lambda: IRNN(2, 24), "fast", 5),
    ],
    ids=["wave-fast", "wave-cpp", "local-fast", "local-cpp", "irnn-fast"],
)
def test_fast_forms_equal_reference_in_float32(make_layer, impl, batch):
    # a fixed init: float32 round-off over 40 steps depends on the weights, and with some random
    # inits exceeds these bounds in whichever float32 form (even the reference) sums differently
    torch.manual_seed(0)
    layer = make_layer()
    tol = {"rtol": 1e-4, "atol": 1e-5}
    assert_forms_agree(
        layer, batch=batch, steps=40, give_h0=True, dtype=torch.float32, tol=tol, impl=impl
    )


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("layer_class", [WaveRNN, LocalRNN])
def test_cpp_form_equals_reference_for_every_split_of_the_batch_over_threads(
    layer_class, threads, torch_threads
):
    # 13 rings: two blocks of output channels; batch 19: padded to 5 vectors of float64,
    # cut into uneven slices, with whole chunks, single vectors and padding
    torch_threads(threads)
    layer = layer_class(3, 7, 13, kernel_size=5, recurrent_init="random", input_init="default")
    assert_forms_agree(layer, batch=19, steps=9, give_h0=True, impl="cpp")


@pytest.mark.parametrize(("layer_class", "impl"), RING_FORMS, ids=RING_IDS)
def test_fast_forms_keep_the_exact_shift_dynamics(layer_class, impl):
    layer = layer_class(1, 7, 3)
    set_impl(layer, impl)
    x = torch.zeros(2, 20, 1)
    x[:, 0] = 1.0
    rings = layer(x)[0].view(2, 20, 3, 7)
    for t in range(20):
        expected = torch.zeros(7)
        expected[t % 7] = 1.0
        assert torch.equal(rings[:, t], expected.expand(2, 3, 7))


@pytest.mark.parametrize("impl", ["fast", "cpp"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_nan_input_propagates_as_in_the_reference(impl, activation):
    def states_and_input_grad(form: str) -> list[torch.Tensor]:
        layer = WaveRNN(1, 5, 2, activation=activation, input_init="normal")
        layer.load_state_dict(reference.state_dict())
        set_impl(layer, form)
        x = torch.ones(2, 3, 1, requires_grad=True)
        x.data[0, 1] = float("nan")
        states = layer(x)[0]
        states.sum().backward()
        return [states.detach(), x.grad]

    reference = WaveRNN(1, 5, 2, activation=activation, input_init="normal")
    expected = states_and_input_grad("reference")
    assert expected[0][0, 1:].isnan().all() and not expected[0][1].isnan().any()
    for got, want in zip(states_and_input_grad(impl), expected, strict=True):
        torch.testing.assert_close(got, want, equal_nan=True)


def test_auto_picks_cpp_for_the_ring_layers_on_cpu_and_the_fast_form_otherwise():
    x = torch.zeros(1, 2, 1)
    assert WaveRNN(1, 4, 1).resolve_impl(x) == "cpp"
    assert WaveRNN(1, 4, 27).resolve_impl(x) == "cpp"
    assert WaveRNN(1, 4).double().resolve_impl(x.double()) == "cpp"
    assert WaveRNN(1, 4).to(torch.bfloat16).resolve_impl(x.bfloat16()) == "fast"
    assert IRNN(1, 4).resolve_impl(x) == "fast"
    assert LocalRNN(1, 4).resolve_impl(x) == "cpp"
    assert LocalRNN(1, 4).to(torch.bfloat16).resolve_impl(x.bfloat16()) == "fast"


def test_auto_falls_back_to_the_fast_form_when_the_extension_cannot_be_built(monkeypatch):
    def no_compiler():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(cpp_ring, "extension", no_compiler)
    cpp_ring.available.cache_clear()
    try:
        with pytest.warns(UserWarning, match="C.. ring recurrence unavailable .no C.. compiler"):
            assert WaveRNN(1, 4, 2).resolve_impl(torch.zeros(1, 2, 1)) == "fast"
    finally:
        cpp_ring.available.cache_clear()


def test_cpp_form_reuses_freed_states_memory_but_never_live_states():
    layer = WaveRNN(1, 64, 8, recurrent_init="random")
    set_impl(layer, "cpp")
    x = torch.randn(256, 8, 1)  # states of 4 MiB; memory is kept in 2 MiB units
    with torch.no_grad():
        first = layer(x)[0]
        kept = first.clone()
        second = layer(x)[0]  # first is alive: fresh memory
        assert second.data_ptr() != first.data_ptr()
        assert torch.equal(first, kept) and torch.equal(second, kept)
        address = second.data_ptr()
        del second
        assert layer(x)[0].data_ptr() == address  # freed memory of the same size is reused
        assert torch.equal(layer(x[:128])[0], kept[:128])  # another size: new memory
    cpp_ring.empty_cache()
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], kept)


def test_cpp_form_refuses_what_it_cannot_run():
    layer = WaveRNN(1, 4, 2).to(torch.bfloat16)
    layer.impl = "cpp"
    with pytest.raises(RuntimeError, match="impl='cpp' runs on float32/float64 CPU tensors"):
        layer(torch.zeros(1, 2, 1, dtype=torch.bfloat16))


def test_impl_names_are_checked():
    layer = WaveRNN(1, 4)
    with pytest.raises(ValueError, match="impl='fastest'"):
        layer.impl = "fastest"
    with pytest.raises(ValueError, match="LocalRNN has no impl='triton'"):
        LocalRNN(1, 4).impl = "triton"
    with pytest.raises(ValueError, match="IRNN has no impl='cpp'"):
        IRNN(1, 4).impl = "cpp"


def test_impl_is_not_part_of_the_state_dict():
    layer = WaveRNN(1, 4)
    layer.impl = "reference"
    assert set(layer.state_dict()) == {
        "input.weight",
        "input.bias",
        "recurrent.conv.weight",
        "recurrent.conv.bias",
    }


TRITON_CHECK = """
import torch
from wave_lightning.nn import WaveRNN
from tests.test_fast_recurrence import outputs_and_grads
cases = [("relu", 3, 3, 6, 2, True), ("tanh", 5, 1, 7, 1, False), ("identity", 3, 2, 5, 2, True)]
for dtype, tol in ((torch.float64, {}), (torch.float32, {"rtol": 1e-4, "atol": 1e-5})):
    for activation, kernel, n_ch, n_hid, batch, give_h0 in cases:
        torch.manual_seed(0)
        layer = WaveRNN(2, n_hid, n_ch, kernel, "random", "default", activation).to(dtype)
        x = torch.randn(batch, 4, 2, dtype=dtype, requires_grad=True)
        h0 = torch.randn(batch, n_ch * n_hid, dtype=dtype, requires_grad=True) if give_h0 else None
        want = outputs_and_grads(layer, "reference", x, h0)
        got = outputs_and_grads(layer, "triton", x, h0)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, **tol)
print("triton kernels agree")
"""


@pytest.mark.slow
def test_triton_kernels_equal_reference_in_the_cpu_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "triton kernels agree" in done.stdout


def test_triton_impl_without_a_gpu_fails_clearly():
    layer = WaveRNN(1, 4)
    layer.impl = "triton"
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("a GPU or the interpreter is present")
    with pytest.raises(RuntimeError, match="impl='triton' needs Triton and a CUDA tensor"):
        layer(torch.zeros(1, 2, 1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["fast", "triton"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_gpu_forms_equal_reference(impl, activation):
    torch.manual_seed(0)
    layer = WaveRNN(3, 40, 16, recurrent_init="random", activation=activation).cuda()
    x = torch.randn(6, 50, 3, device="cuda", requires_grad=True)
    h0 = torch.randn(6, 640, device="cuda").relu().requires_grad_()
    want = outputs_and_grads(layer, "reference", x, h0)
    got = outputs_and_grads(layer, impl, x, h0)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["fast", "cpp"])
def test_fast_forms_refuse_double_backward_instead_of_returning_wrong_values(impl):
    layer = WaveRNN(1, 5, 2)
    set_impl(layer, impl)
    x = torch.randn(2, 3, 1, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x)[0].square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


LARGE_FORMS = [
    (lambda: IRNN(3, 32), "fast"),
    (lambda: WaveRNN(3, 8, 4), "fast"),
    (lambda: WaveRNN(3, 8, 4), "cpp"),
    (lambda: LocalRNN(3, 8, 4), "fast"),
    (lambda: LocalRNN(3, 8, 4), "cpp"),
]


@pytest.mark.parametrize(
    ("make_layer", "impl"), LARGE_FORMS, ids=["irnn-fast", *[i.lower() for i in RING_IDS]]
)
def test_float32_gradients_stay_accurate_at_large_state_magnitudes(make_layer, impl):
    # a last input of about 1e6 makes each sequence's last state huge while every earlier one
    # is of order 1: a weight gradient that pairs a sequence's first dz with the previous
    # sequence's last state and subtracts it again (IRNN's fast form did) loses 1e-3 of it
    torch.manual_seed(0)
    layer = make_layer()
    x = torch.randn(16, 30, 3, dtype=torch.float64)
    x[:, -1] *= 1e6
    h0 = torch.rand(16, layer.hidden_size, dtype=torch.float64)

    def run(form: str, precision: torch.dtype) -> list[torch.Tensor]:
        inputs = [t.to(precision).requires_grad_() for t in (x, h0)]
        return outputs_and_grads(copy.deepcopy(layer).to(precision), form, *inputs)

    truth = run("reference", torch.float64)
    assert truth[0].abs().max() > 1e6
    for got, want in zip(run(impl, torch.float32), truth, strict=True):
        assert ((got.double() - want).norm() / want.norm()).item() < 1e-5


def test_the_cpp_build_is_keyed_by_cpu_torch_build_and_source(monkeypatch):
    name = cpp_ring.build_name()
    assert name.startswith("wave_lightning_ring_cpu_")
    assert str(Path(torch.__file__).parent) in cpp_ring.torch_tag()
    assert str(torch._C._GLIBCXX_USE_CXX11_ABI) in cpp_ring.torch_tag()
    monkeypatch.setattr(cpp_ring, "torch_tag", lambda: "2.0.0 /other/venv/torch False")
    other_torch = cpp_ring.build_name()
    monkeypatch.setattr(cpp_ring, "cpu_tag", lambda: "x86_64 another CPU")
    assert len({name, other_torch, cpp_ring.build_name()}) == 3


def test_a_first_build_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    importlib.import_module("torch.utils.cpp_extension")  # its import may warn of no CUDA
    capsys.readouterr()
    cpp_ring.announce_build("ring_probe")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "compiling the C++ ring recurrence for this CPU and torch build" in err
    assert "about 35 s" in err and str(tmp_path / "ring_probe") in err
    build = tmp_path / "ring_probe"
    (build / "ring_probe.so").touch()  # built: later loads say nothing
    cpp_ring.announce_build("ring_probe")
    assert capsys.readouterr().err == ""
    (build / "in.txt").touch()  # a build whose output is out of date: the rebuild is announced
    rules = "rule cp\n  command = cp $in $out\nbuild out.txt: cp in.txt\n"
    (build / "build.ninja").write_text(rules)
    cpp_ring.announce_build("ring_probe")
    assert "compiling the C++ ring recurrence" in capsys.readouterr().err
    with cpp_ring.package_ninja():  # built by the same ninja: up to date, nothing said
        subprocess.run(["ninja", "-C", str(build)], check=True, capture_output=True)
    cpp_ring.announce_build("ring_probe")
    assert capsys.readouterr().err == ""


def test_the_build_uses_the_ninja_package_whatever_ninja_comes_first_on_path(tmp_path):
    # another ninja first on PATH, as outside an activated venv
    path = path_with_fake(tmp_path, "ninja", f"#!/bin/sh\ntouch {tmp_path / 'fake-ran'}\nexit 1\n")
    code = "from wave_lightning.nn.kernels import cpp_ring; cpp_ring.extension(); print('loaded')"
    env = {**os.environ, "PATH": path}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "loaded", result.stderr[-2000:]
    assert not (tmp_path / "fake-ran").exists()
