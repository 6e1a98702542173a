"""benchmarks/run_cost.py builds a shipped image config through the CLI and extrapolates a run."""

import importlib.util
import math

from tests.helpers import ROOT

SPEC = importlib.util.spec_from_file_location("run_cost", ROOT / "benchmarks/run_cost.py")
run_cost = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(run_cost)


def test_measure_extrapolates_the_configs_whole_run():
    row = run_cost.measure("smnist_irnn", "cpu", repeats=1)
    assert (row["batch"], row["seq_len"], row["epochs"]) == (128, 784, 250)
    assert row["steps_per_epoch"] == math.ceil(57000 / 128)
    train_s = row["steps_per_epoch"] * row["train_step_s"]
    val_s = math.ceil(3000 / 128) * row["val_batch_s"]
    expected = 250 * (train_s + val_s)
    assert math.isclose(row["run_hours"], expected / 3600)
    assert row["params"] > 60000 and row["train_step_s"] > 0
