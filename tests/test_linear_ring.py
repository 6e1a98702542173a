"""The linear wave ring as a state-space model: its parallel form equals the per-step loop, its
spectrum is the dense recurrence's, and the shift init's spectrum is the N-th roots of unity."""

import copy
import json
import math

import pytest
import torch

from benchmarks import linear_ring as benchmark
from tests.test_fast_recurrence import outputs_and_grads
from wave_lightning.analysis import ring_spectrum, wave_speeds
from wave_lightning.nn import LocalRNN, WaveRNN
from wave_lightning.nn.kernels import cpp_ring
from wave_lightning.nn.kernels.linear_ring import block_powers


def linear_ring(
    n_ch: int, kernel_size: int, init: str, n_hid: int = 7, impl: str = "reference", **kwargs
) -> WaveRNN:
    """A float64 WaveRNN with the identity activation (seeded), by default the per-step form."""
    torch.manual_seed(0)
    layer = WaveRNN(2, n_hid, n_ch, kernel_size, init, activation="identity", impl=impl, **kwargs)
    return layer.double()


def dense_matrix(layer: WaveRNN) -> torch.Tensor:
    """The recurrent weights U as a dense (H, H) matrix: U applied to every unit vector."""
    basis = torch.eye(layer.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        return (layer.recurrent(basis) - layer.recurrent(torch.zeros_like(basis))).T


def max_relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest difference over the largest value of `want`: round-off is about 1e-16."""
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("give_h0", [False, True], ids=["no-h0", "h0"])
@pytest.mark.parametrize("n_ch,kernel_size", [(1, 3), (1, 5), (3, 3), (3, 5)])
@pytest.mark.parametrize("init", ["shift", "identity", "random"])
def test_parallel_form_equals_the_reference_in_values_and_gradients(
    init, n_ch, kernel_size, give_h0
):
    layer = linear_ring(n_ch, kernel_size, init, input_init="default")
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 12, 2, generator=generator, dtype=torch.float64)
    h0 = torch.randn(3, layer.hidden_size, generator=generator, dtype=torch.float64)
    h0 = h0 if give_h0 else None

    def run(impl: str) -> list[torch.Tensor]:
        inputs = [t if t is None else t.clone().requires_grad_() for t in (x, h0)]
        return outputs_and_grads(copy.deepcopy(layer), impl, *inputs)

    expected, actual = run("reference"), run("parallel")
    assert len(actual) == len(expected) == 3 + give_h0 + 4  # states, last, x, h0, 4 parameters
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == torch.float64 and got.shape == want.shape
        assert max_relative_error(got, want) < 1e-12


@pytest.mark.parametrize("init", ["shift", "random"])
def test_parallel_form_in_float32_is_as_close_as_the_float32_loop(init):
    layer = linear_ring(2, 3, init, n_hid=16, input_init="normal")
    x = torch.randn(4, 784, 2, dtype=torch.float64)
    exact = layer(x)[0]
    for impl in ("parallel", "reference"):  # float32 powers would drift: 1e-4 at the shift init
        float32 = copy.deepcopy(layer).float()
        float32.impl = impl
        assert max_relative_error(float32(x.float())[0].double(), exact) < 1e-6


@pytest.mark.parametrize("n_ch,kernel_size", [(1, 3), (2, 5)])
def test_shift_init_spectrum_is_the_nth_roots_of_unity(n_ch, kernel_size):
    n_hid = 9
    eigenvalues = ring_spectrum(linear_ring(n_ch, kernel_size, "shift", n_hid))
    assert eigenvalues.shape == (n_hid, n_ch) and eigenvalues.dtype == torch.complex128
    roots = torch.exp(-2j * math.pi * torch.arange(n_hid, dtype=torch.float64) / n_hid)
    assert (eigenvalues - roots[:, None]).abs().max() < 1e-12  # frequency f turns by -2 pi f/N
    assert (eigenvalues**n_hid - 1).abs().max() < 1e-12
    speeds = wave_speeds(eigenvalues)
    assert speeds[0].isnan().all()
    torch.testing.assert_close(speeds[1:], torch.ones(n_hid - 1, n_ch, dtype=torch.float64))


def test_identity_init_spectrum_is_one_and_stands_still():
    eigenvalues = ring_spectrum(linear_ring(2, 3, "identity"))
    torch.testing.assert_close(eigenvalues, torch.ones(7, 2, dtype=torch.complex128))
    assert wave_speeds(eigenvalues)[1:].eq(0).all()


@pytest.mark.parametrize("n_ch,n_hid", [(1, 8), (3, 7)])
def test_spectrum_is_the_dense_recurrent_matrix_spectrum(n_ch, n_hid):
    layer = linear_ring(n_ch, 5, "random", n_hid)
    dense = torch.linalg.eigvals(dense_matrix(layer))
    blocks = ring_spectrum(layer).flatten()
    assert blocks.shape == dense.shape
    distance = (dense[:, None] - blocks[None]).abs()
    assert distance.min(0).values.max() < 1e-10 and distance.min(1).values.max() < 1e-10


def test_shift_init_impulse_keeps_its_norm_and_returns_after_n_steps():
    n_hid, n_ch = 8, 3
    layer = linear_ring(n_ch, 3, "shift", n_hid, input_init="single", impl="parallel")
    x = torch.zeros(2, 3 * n_hid + 1, 2, dtype=torch.float64)
    x[:, 0, 0] = 1.0
    states = layer(x)[0].view(2, -1, n_ch, n_hid)
    start = torch.zeros(n_hid, dtype=torch.float64)
    start[0] = 1.0
    for t in range(states.shape[1]):  # one unit up the ring per step, never decaying
        expected = start.roll(t).expand(2, n_ch, n_hid)
        assert (states[:, t] - expected).abs().max() < 1e-12
    norms = states.flatten(2).norm(dim=-1)
    assert (norms - math.sqrt(n_ch)).abs().max() < 1e-12
    assert (states[:, n_hid] - states[:, 0]).abs().max() < 1e-12


def test_block_powers_are_the_matrix_powers():
    blocks = torch.randn(5, 3, 3, dtype=torch.complex128)
    powers = block_powers(blocks, 11)
    assert powers.shape == (11, 5, 3, 3)
    for k in range(11):
        want = torch.linalg.matrix_power(blocks, k)
        assert max_relative_error(powers[k], want) < 1e-13


def test_parallel_needs_the_identity_activation_and_a_tied_ring():
    with pytest.raises(ValueError, match="impl='parallel' needs activation='identity'.*'relu'"):
        WaveRNN(1, 8, activation="relu", impl="parallel")
    with pytest.raises(ValueError, match="got activation='tanh'"):
        WaveRNN(1, 8, activation="tanh").impl = "parallel"
    with pytest.raises(ValueError, match="LocalRNN has no impl='parallel' form"):
        LocalRNN(1, 8, activation="identity", impl="parallel")
    with pytest.raises(ValueError, match="layer must be a WaveRNN.*got LocalRNN"):
        ring_spectrum(LocalRNN(1, 8))


def test_a_parallel_checkpoint_loads_under_the_sequential_forms():
    parallel = linear_ring(2, 3, "random", impl="parallel")
    sequential = linear_ring(2, 3, "shift", impl="reference")
    sequential.load_state_dict(parallel.state_dict())
    x = torch.randn(2, 9, 2, dtype=torch.float64)
    assert max_relative_error(parallel(x)[0], sequential(x)[0]) < 1e-12


def test_benchmark_quick_times_both_forms_and_writes_json(tmp_path, capsys):
    if not cpp_ring.available():
        pytest.skip("the C++ extension cannot be built here (see the warning)")
    out = tmp_path / "linear_ring.json"
    benchmark.main(["--quick", "--threads", "1", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1 and data["meta"]["baseline"] == "cpp"
    rows = {(row["shape"], row["form"]): row for row in data["rows"]}
    assert set(rows) == {(s, f) for s in benchmark.QUICK_SHAPES for f in ("cpp", "parallel")}
    for row in rows.values():
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0
        cpp, own = rows[row["shape"], "cpp"]["times_ms"], row["times_ms"]
        assert row["x_baseline"] == pytest.approx((cpp[0] / own[0] + cpp[1] / own[1]) / 2)
    assert "| quick-long | 2 | 200 | 1 x 16 | parallel |" in capsys.readouterr().out


def test_benchmark_refuses_a_form_that_cannot_run_on_the_device():
    with pytest.raises(SystemExit):
        benchmark.main(["--forms", "parallel", "triton"])
