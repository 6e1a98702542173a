"""Ablation statistics: intervals over seeds, levels against a reference paired by seed, checked
on synthetic studies whose effects are known (a real effect is found, a null one at the rate
the test promises)."""

import itertools
import random
import re

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from scipy import stats

from tests.helpers import ROOT
from wave_lightning.sweep import report
from wave_lightning.sweep.significance import compare, paired, summarize
from wave_lightning.sweep.spec import SweepFileError, load_sweep

LR = "optimizer.init_args.lr"
EFFECTS = {"base": 0.0, "real": 1.0, "null": 0.0}  # level -> true effect on the metric


def synthetic_sweep(tmp_path, **extra):
    data = {
        "study": "synthetic",
        "configs": [str(ROOT / "conf/data/copy.yaml"), str(ROOT / "conf/model/wrnn.yaml")],
        "space": {LR: {"choices": list(EFFECTS)}},
        "seeds": list(range(8)),
        "metric": {"name": "val/loss", "direction": "minimize"},
        "root": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_sweep(path)


def synthetic_study(sweep, seed: int = 0) -> optuna.Study:
    """Each seed's value: a seed effect shared by its runs (what pairing removes), the level's
    true effect, and a small noise of its own."""
    noise = random.Random(seed)
    seed_effect = {s: noise.gauss(0, 2.0) for s in sweep.seeds}
    space = {name: CategoricalDistribution(d.choices) for name, d in sweep.space.items()}
    study = optuna.create_study()
    for level, s in itertools.product(EFFECTS, sweep.seeds):
        value = 10 + seed_effect[s] + EFFECTS[level] + noise.gauss(0, 0.2)
        params = {LR: level, "seed": s}
        study.add_trial(create_trial(params=params, distributions=space, value=value))
    return study


def test_an_interval_of_the_mean_is_students_t():
    summary = summarize([1.0, 2.0, 3.0])
    low, high = stats.t.interval(0.95, 2, loc=2.0, scale=1.0 / 3**0.5)
    assert (summary.n, summary.mean, summary.std) == (3, 2.0, 1.0)
    assert (summary.low, summary.high) == (pytest.approx(low), pytest.approx(high))
    assert summarize([5.0]).low is None


def test_a_real_effect_is_found_and_a_null_one_is_not(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    found = {c.level: c for c in report.comparisons(synthetic_study(sweep), sweep)}
    assert set(found) == {"real", "null"} and found["real"].reference == "base"
    real, null = found["real"], found["null"]
    assert real.difference.n == 8
    assert real.difference.low < 1.0 < real.difference.high  # the true effect is inside
    assert real.difference.low > 0 and real.p_value < 1e-4
    assert null.difference.low < 0 < null.difference.high and null.p_value > 0.05


def test_pairing_by_seed_removes_the_seed_effect(tmp_path):
    # unpaired, a seed effect of sd 2 would hide an effect of 1 in 8 seeds; paired it does not
    sweep = synthetic_sweep(tmp_path)
    study = synthetic_study(sweep)
    by_level = {
        level: [t.value for t in study.trials if t.params[LR] == level] for level in EFFECTS
    }
    assert stats.ttest_ind(by_level["real"], by_level["base"]).pvalue > 0.05
    found = {c.level: c for c in report.comparisons(study, sweep)}
    assert found["real"].p_value < 1e-4


def test_a_null_effect_is_found_at_the_stated_rate():
    rng = random.Random(1)
    trials = 2000
    rejected = 0
    for _ in range(trials):
        pairs = [(rng.gauss(0, 1), rng.gauss(0, 1)) for _ in range(6)]
        rejected += compare("f", "b", "a", pairs).p_value < 0.05
    assert 0.04 < rejected / trials < 0.06  # 5% expected; 2000 draws: sd 0.5%


def test_too_few_seeds_and_constant_differences_are_said_not_tested():
    assert compare("f", "b", "a", [(1.0, 0.0)]).note == "1 pair(s): too few seeds to test"
    constant = compare("f", "b", "a", [(1.0, 0.0), (2.0, 1.0)])
    assert constant.p_value is None and constant.difference.mean == 1.0
    assert constant.note == "the same difference in every pair: no spread to test"


def test_pairs_match_seed_and_every_other_factor():
    groups = {("x", "a"): {0: 1.0, 1: 2.0}, ("x", "b"): {0: 5.0, 2: 9.0}, ("y", "b"): {1: 7.0}}
    assert paired(groups, 1, "b", "a") == [(5.0, 1.0)]  # seed 2 and level y have no twin


def test_the_report_names_the_test_and_the_reference(tmp_path):
    sweep = synthetic_sweep(tmp_path, reference={LR: "null"})
    text = report.ablation_markdown(synthetic_study(sweep), sweep)
    assert "each level against its reference, paired t-test over seeds" in text
    header = "| factor | level | reference | pairs | difference in val/loss | 95% CI | p | d_z |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| lr | ")]
    assert [row.split(" | ")[1:4] for row in rows[-2:]] == [
        ["base", "null", "8"],
        ["real", "null", "8"],
    ]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"trainer.max_steps": 3}, "reference.trainer.max_steps: not a grid factor"),
        ({LR: "fast"}, "reference.optimizer.init_args.lr: 'fast' is not one of"),
        ([LR], "reference: expected a mapping"),
    ],
)
def test_a_bad_reference_is_named(tmp_path, reference, message):
    with pytest.raises(SweepFileError, match=re.escape(message)):
        synthetic_sweep(tmp_path, reference=reference)


def test_the_reference_defaults_to_each_factors_first_level(tmp_path):
    assert synthetic_sweep(tmp_path).reference == {LR: "base"}
