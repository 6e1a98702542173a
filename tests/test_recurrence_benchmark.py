"""The benchmarks run end to end: timings, ratios, peak memory, JSON; the kernel-only one and
the whole training step."""

import json
import os
from dataclasses import replace

import pytest
import torch

from benchmarks import recurrence, training_step


@pytest.mark.slow
def test_benchmark_times_forms_side_by_side_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--scales", "copy", "--forms", "wrnn-reference", "wrnn-cpp", "local-cpp"]
    recurrence.main([*args, "--repeats", "2", "--threads", "1", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1 and data["meta"]["matmul_gflops"] > 0
    rows = {(row["form"], row["mode"]): row for row in data["rows"]}
    assert set(rows) == {(f, m) for f in args[3:] for m in ("fwd+bwd", "fwd")}
    for (_, mode), row in rows.items():
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0
        assert row["gflops"] > 0 and row["fraction_of_matmul"] > 0
        assert (row["peak_mib"] > 0) if mode == "fwd+bwd" else row["peak_mib"] is None
    assert rows["wrnn-reference", "fwd"]["ratio_to_reference"] == 1.0
    assert "| copy | fwd+bwd | wrnn-cpp |" in capsys.readouterr().out


def test_benchmark_rejects_unknown_scales():
    with pytest.raises(SystemExit):
        recurrence.main(["--scales", "huge"])


def die(job):
    """A measurement whose process is killed, as the kernel kills one out of memory."""
    os._exit(9)


def test_a_killed_peak_measurement_gives_no_peak_and_a_message(capsys):
    assert recurrence.peak_in_child(("copy", "wrnn-cpp", 1), measure=die) is None
    assert "wrnn-cpp at copy: the measuring process died" in capsys.readouterr().out


@pytest.mark.slow
def test_training_step_benchmark_times_whole_steps_side_by_side(tmp_path, capsys):
    out = tmp_path / "steps.json"
    forms = ["wrnn-reference", "wrnn-authors", "wrnn-cpp", "gru"]
    training_step.main(
        ["--shapes", "mnist1d", "--forms", *forms, "--repeats", "2", "--threads", "1",
         "--json", str(out)]
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1 and data["meta"]["matmul_gflops"] > 0
    rows = {row["form"]: row for row in data["rows"]}
    assert list(rows) == forms
    for row in rows.values():
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0 and row["peak_mib"] > 0
        assert 0 < row["fraction_of_matmul"] < 2
    assert rows["wrnn-reference"]["x_reference"] == 1.0 and rows["gru"]["x_gru"] == 1.0
    times = {form: row["times_ms"] for form, row in rows.items()}
    pairs = zip(times["wrnn-reference"], times["wrnn-authors"], strict=True)
    fastest = [min(pair) for pair in pairs]
    cpp = times["wrnn-cpp"]  # ratios within a round, then the median (of two: their mean)
    assert rows["wrnn-cpp"]["x_best_baseline"] == pytest.approx(
        (fastest[0] / cpp[0] + fastest[1] / cpp[1]) / 2
    )
    assert rows["wrnn-cpp"]["x_gru"] == pytest.approx(
        (times["gru"][0] / cpp[0] + times["gru"][1] / cpp[1]) / 2
    )
    assert 0 < rows["wrnn-cpp"]["boundary_share"] < 1  # profiled: the C++ Function's events
    assert rows["wrnn-reference"]["boundary_share"] is None and rows["gru"]["use"] == "task"
    assert "| mnist1d | task | wrnn-cpp |" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["copy30", "adding100", "mnist1d"])
def test_the_authors_form_computes_the_same_model_as_the_reference(shape):
    s = replace(training_step.SHAPES[shape], batch=4, steps=6)
    reference = training_step.make_task("wrnn-reference", s, torch.device("cpu"))
    authors = training_step.make_task("wrnn-authors", s, torch.device("cpu"))
    assert isinstance(authors.model, training_step.AuthorsForm)
    for a, b in zip(reference.parameters(), authors.parameters(), strict=True):
        assert torch.equal(a, b)  # the same weights
    x = torch.rand(s.batch, s.steps, s.inputs)
    torch.testing.assert_close(authors(x), reference(x))


def test_training_step_benchmark_rejects_unknown_shapes():
    with pytest.raises(SystemExit):
        training_step.main(["--shapes", "huge"])


@pytest.mark.parametrize("use", ["square", "head", "stack2"])
def test_a_layer_in_user_code_is_the_same_model_in_every_form(use):
    """The user-code rows compare like with like: the same weights and outputs in the reference
    and the C++ form, and a loss that reaches every parameter."""
    s = replace(training_step.SHAPES["copy30"], batch=4, steps=6)
    x = torch.rand(s.batch, s.steps, s.inputs)
    reference = training_step.UserCode("wrnn-reference", s, use)
    cpp = training_step.UserCode("wrnn-cpp", s, use)
    for a, b in zip(reference.parameters(), cpp.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(cpp(x), reference(x))
    reference.loss(reference(x), None).backward()
    assert all(p.grad is not None for p in reference.parameters())
