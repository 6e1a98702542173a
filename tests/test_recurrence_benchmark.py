"""The recurrence benchmark runs end to end: timings, ratios, peak memory, JSON."""

import json
import os

import pytest

from benchmarks import recurrence


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
