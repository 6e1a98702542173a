"""The sweep report's plots: importances that separate the factors, named axes, log scales."""

import itertools
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from tests.helpers import ROOT
from wave_lightning.sweep import report
from wave_lightning.sweep.spec import load_sweep

SWEEP = ROOT / "sweeps" / "copy_ablation_cpu.yaml"
LAYER, RECURRENT, INPUT = (
    "layer",
    "model.init_args.layer.init_args.recurrent_init",
    "model.init_args.layer.init_args.input_init",
)


def ablation_study(seeds: int = 3) -> optuna.Study:
    """The CPU copy ablation with known effects: only the wave ring with the shift init solves
    the task (loss ~1e-4 against ~0.5); the input init changes nothing but the seed's noise."""
    sweep = load_sweep(SWEEP)
    space = {name: CategoricalDistribution(d.choices) for name, d in sweep.space.items()}
    space["seed"] = CategoricalDistribution(list(range(seeds)))
    noise = random.Random(0)
    study = optuna.create_study(direction="minimize")
    for layer, recurrent, input_init, seed in itertools.product(
        ["wave", "dense"], ["shift", "random"], ["single", "normal"], range(seeds)
    ):
        solved = layer == "wave" and recurrent == "shift"
        value = (1e-4 if solved else 0.48) * (1 + 0.05 * noise.random())
        params = {LAYER: layer, RECURRENT: recurrent, INPUT: input_init, "seed": seed}
        study.add_trial(create_trial(params=params, distributions=space, value=value))
    return study


def test_importances_by_fanova_separate_a_factor_that_changes_nothing():
    pytest.importorskip("sklearn")
    study, sweep = ablation_study(), load_sweep(SWEEP)
    importances = report.factor_importances(study, sweep, [LAYER, RECURRENT, INPUT])
    assert set(importances) == {"layer", "recurrent_init", "input_init"}
    assert sum(importances.values()) == pytest.approx(1.0)
    deciding = min(importances["layer"], importances["recurrent_init"])
    assert importances["input_init"] < 0.1 * deciding
    assert report.importance_evaluator()[1] == "fANOVA"


def test_ablation_ticks_name_every_factor_with_the_table_names():
    study, sweep = ablation_study(seeds=1), load_sweep(SWEEP)
    labels = report.factor_labels(sweep, list(report.ablation_groups(study, sweep)))
    assert labels[0] == "layer=wave\nrecurrent_init=shift\ninput_init=single"
    assert labels[-1] == "layer=dense\nrecurrent_init=random\ninput_init=normal"
    header = report.ablation_markdown(study, sweep).splitlines()[2]
    assert header.startswith("| layer | recurrent_init | input_init | seeds |")


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ([0.4, 0.5, 0.7], {"value": "linear"}),
        ([1e-5, 0.5], {"value": "log"}),
        ([0.0, 1e-5, 0.5], {"value": "symlog", "linthresh": 1e-5}),
        ([0.0, 0.0], {"value": "linear"}),
    ],
)
def test_values_spanning_decades_get_a_log_axis_and_zeros_a_linear_core(values, scale):
    assert report.value_scale(values) == scale


def test_write_plots_writes_history_importances_and_ablation(tmp_path):
    pytest.importorskip("sklearn")
    written = report.write_plots(ablation_study(seeds=2), load_sweep(SWEEP), tmp_path)
    names = ["history.png", "importances.png", "ablation.png"]
    assert written == [tmp_path / name for name in names]
    for path in written:
        assert path.read_bytes()[:4] == b"\x89PNG"
