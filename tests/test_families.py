"""The MNIST-1D table of every family: its configs, its sweep and scripts/families_report.py."""

import csv
import importlib.util
import json
import re

import pytest
import yaml

from tests.helpers import ROOT
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import grid_points

SPEC = importlib.util.spec_from_file_location("families", ROOT / "scripts/families_report.py")
report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(report)

CONFIGS = ROOT / "conf/model/mnist1d_families"
CPU_SWEEP = ROOT / "sweeps/mnist1d_families_cpu.yaml"
BUDGETS = {"5k": 5000, "50k": 50000}

# level: (trainable parameters of layer + readout, state size), counted by hand from the configs:
# a single layer carries its hidden units (2 x for LSTM h and c, coRNN and LEM y and z); S4D
# hidden_size x state_size / 2 complex modes and the LRU state_size modes, 2 reals each; a stack
# the sum over its 4 layers.
EXPECTED = {
    "wrnn_5k": (5010, 8 * 50),
    "wrnn_deep_5k": (4994, 4 * 32),
    "linear_ring_deep_5k": (4994, 4 * 32),
    "irnn_5k": (4938, 64),
    "lstm_5k": (5092, 2 * 33),
    "gru_5k": (5064, 38),
    "cornn_5k": (5194, 2 * 48),
    "lem_5k": (5092, 2 * 33),
    "s4d_deep_5k": (5144, 4 * 17 * 8 * 2),
    "lru_deep_5k": (4886, 4 * 12 * 2),
    "wrnn_50k": (50762, 64 * 50),
    "wrnn_deep_50k": (49530, 4 * 108),
    "linear_ring_deep_50k": (49530, 4 * 108),
    "irnn_50k": (49920, 217),
    "lstm_50k": (49932, 2 * 109),
    "gru_50k": (50032, 126),
    "cornn_50k": (49920, 2 * 155),
    "lem_50k": (49932, 2 * 109),
    "s4d_deep_50k": (50242, 4 * 52 * 32 * 2),
    "lru_deep_50k": (49930, 4 * 46 * 2),
}


def test_sweep_has_every_family_at_both_budgets_three_seeds_same_epochs():
    sweep = load_sweep(CPU_SWEEP)
    assert len(grid_points(sweep)) == 60
    (factor,) = sweep.factors
    assert set(factor.config_files) == set(EXPECTED)
    assert {p.name for p in CONFIGS.glob("*.yaml")} == {f"{k}.yaml" for k in EXPECTED}
    assert sweep.seeds == [0, 1, 2] and not sweep.is_multi and sweep.metric == "val/acc"
    assert sweep.args == ["--trainer.max_epochs=30", "--trainer.accelerator=cpu"]
    assert load_sweep(ROOT / "sweeps/mnist1d_families.yaml").args == ["--trainer.max_epochs=50"]


def test_overlays_follow_their_families():
    def layer(level):
        return yaml.safe_load((CONFIGS / f"{level}.yaml").read_text())["model"]["init_args"][
            "layer"
        ]

    for budget in BUDGETS:
        ring = layer(f"linear_ring_deep_{budget}")["init_args"]["layer"]["init_args"]
        deep = layer(f"wrnn_deep_{budget}")["init_args"]["layer"]["init_args"]
        assert ring == {**deep, "activation": "identity"} and deep["activation"] == "relu"
        assert layer(f"wrnn_{budget}")["init_args"]["input_init"] == "single"
        for level in ("s4d_deep", "lru_deep"):
            stack = layer(f"{level}_{budget}")
            assert stack["class_path"] == "wave_lightning.models.ResidualStack"
            assert stack["init_args"]["pool"] == "mean" and stack["init_args"]["n_layers"] == 4
            assert stack["init_args"]["mixing"] == "glu"  # the published blocks' GELU and GLU


@pytest.mark.slow
def test_every_overlay_builds_within_its_budget_with_the_stated_size():
    described = report.describe_levels(load_sweep(CPU_SWEEP))
    assert {k: (v["parameters"], v["state_size"]) for k, v in described.items()} == EXPECTED
    for level, (params, state) in EXPECTED.items():
        assert (
            abs(params - BUDGETS[level.rsplit("_", 1)[1]])
            <= 0.05 * BUDGETS[level.rsplit("_", 1)[1]]
        )
        comment = (CONFIGS / f"{level}.yaml").read_text()
        assert f"{params:,} trainable parameters" in comment, level
        assert re.search(rf"state size {state:,}\b", comment), level
    assert {v["steps_per_epoch"] for v in described.values()} == {36}  # 3600 examples / 100


def synthetic_sweep(tmp_path):
    """Three of the levels, so that the report builds only three models."""
    data = {
        "study": "families-test",
        "configs": [str(ROOT / "conf/experiment/mnist1d_wrnn.yaml")],
        "args": ["--trainer.max_epochs=30", "--trainer.accelerator=cpu"],
        "space": {
            "model": {
                "configs": {k: str(CONFIGS / f"{k}.yaml") for k in ("gru_5k", "lstm_5k", "gru_50k")}
            }
        },
        "seeds": [0, 1, 2],
        "metric": {"name": "val/acc", "direction": "maximize"},
        "root": str(tmp_path / "root"),
    }
    path = tmp_path / "families.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


TRIALS = [  # state, level, seed, test/acc, step_seconds
    ("COMPLETE", "gru_5k", 0, 0.80, 0.01),
    ("COMPLETE", "gru_5k", 1, 0.82, 0.03),
    ("COMPLETE", "gru_5k", 2, 0.84, 0.02),
    ("COMPLETE", "lstm_5k", 0, 0.5, 0.1),
    ("FAIL", "lstm_5k", 1, None, None),
    ("RUNNING", "gru_50k", 0, None, None),
]


def write_trials(path):
    columns = ["number", "state", "val/acc", "params_model", "params_seed", "params"]
    columns += ["step_seconds", "test/acc", "test/loss"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for number, (state, level, seed, acc, step) in enumerate(TRIALS):
            done = state == "COMPLETE"
            writer.writerow(
                {
                    "number": number,
                    "state": state,
                    "val/acc": acc if done else "",
                    "params_model": level,
                    "params_seed": seed,
                    "params": EXPECTED[level][0] if done else "",
                    "step_seconds": step if done else "",
                    "test/acc": acc if done else "",
                    "test/loss": 1.0 if done else "",
                }
            )


def test_report_means_std_seconds_per_epoch_and_rows_not_run(tmp_path, capsys):
    sweep_file = synthetic_sweep(tmp_path)
    write_trials(tmp_path / "trials.csv")
    out = tmp_path / "out"
    report.main([str(sweep_file), "--out", str(out), "--trials", str(tmp_path / "trials.csv")])
    assert "wrote" in capsys.readouterr().out
    entries = {e["level"]: e for e in json.loads((out / "families.json").read_text())}
    gru = entries["gru_5k"]
    assert gru["seeds"] == 3 and gru["test_acc_mean"] == pytest.approx(0.82)
    assert gru["test_acc_std"] == pytest.approx(0.02)  # sample std of 0.80, 0.82, 0.84
    assert gru["seconds_per_epoch"] == pytest.approx(0.02 * 36)  # median step x 36 steps
    assert (gru["parameters"], gru["state_size"]) == EXPECTED["gru_5k"]
    lstm = entries["lstm_5k"]
    assert lstm["seeds"] == 1 and lstm["test_acc_std"] is None
    assert lstm["seconds_per_epoch"] == pytest.approx(3.6)
    assert entries["gru_50k"]["seeds"] == 0 and entries["gru_50k"]["test_acc_mean"] is None
    table = (out / "families.md").read_text()
    assert "| gru | 5k | 82.0 ± 2.0 | 3 of 3 | 5,064 | 38 | 0.72 |" in table
    assert "| lstm | 5k | 50.0 | 1 of 3 | 5,092 | 66 | 3.60 |" in table
    assert "| gru | 50k | not run yet | 0 of 3 | 50,032 | 126 | not run yet |" in table
    assert table.index("| lstm | 5k") < table.index("| gru | 50k")  # 5k rows first


def test_report_before_the_sweep_started_says_not_run_yet(tmp_path):
    sweep_file = synthetic_sweep(tmp_path)
    (written, _) = report.write_families_report(str(sweep_file), tmp_path / "out")
    assert written.read_text().count("not run yet") == 2 * 3
    assert not (tmp_path / "root").exists()
