"""Sweep files: what a good one becomes, and bad ones failing before any trial runs."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.study import StudyDirection

from tests.helpers import ROOT
from wave_lightning.sweep.objective import fit_command
from wave_lightning.sweep.spec import SweepFileError, load_sweep
from wave_lightning.sweep.storage import grid_points, open_storage, open_study, study_sampler
from wave_lightning.sweep.validate import check_points

SHIPPED = sorted((ROOT / "sweeps").rglob("*.yaml"))


def write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def good(tmp_path: Path, **changes) -> dict:
    data = {
        "study": "s",
        "configs": [str(ROOT / "conf/data/copy.yaml")],
        "space": {
            "layer": {"configs": {"wave": str(ROOT / "conf/model/wrnn.yaml")}},
            "model.init_args.layer.init_args.recurrent_init": {"choices": ["shift", "random"]},
            "optimizer.init_args.lr": {"choices": [0.01, -1.0]},
        },
        "seeds": [0, 1, 2],
        "metric": {"name": "val/loss", "direction": "minimize"},
        "root": str(tmp_path / "runs"),
    }
    data.update(changes)
    return data


def test_grid_points_and_fit_command(tmp_path):
    sweep = load_sweep(write(tmp_path, "s.yaml", good(tmp_path, args=["--data.delay=2"])))
    points = grid_points(sweep)
    assert len(points) == 1 * 2 * 2 * 3
    assert points[0] == {
        "layer": "wave",
        "model.init_args.layer.init_args.recurrent_init": "shift",
        "optimizer.init_args.lr": 0.01,
        "seed": 0,
    }
    assert points[1]["seed"] == 1 and points[3]["optimizer.init_args.lr"] == -1.0
    assert sweep.space["seed"] == CategoricalDistribution([0, 1, 2])
    command = fit_command(sweep, points[3], tmp_path / "runs" / "trial-0003", 3)
    assert command[command.index("fit") + 1 :] == [
        "--config",
        str(ROOT / "conf/data/copy.yaml"),
        "--config",
        str(ROOT / "conf/model/wrnn.yaml"),
        "--data.delay=2",
        "--model.init_args.layer.init_args.recurrent_init=shift",
        "--optimizer.init_args.lr=-1.0",
        "--seed_everything",
        "0",
        "--trainer.default_root_dir",
        str(tmp_path / "runs" / "trial-0003"),
        "--trainer.callbacks+=wave_lightning.sweep.trial_callback.TrialReporter",
        f"--trainer.callbacks.sweep={tmp_path / 's.yaml'}",
        "--trainer.callbacks.trial_number=3",
    ]


def test_extends_overrides_keys_and_resolves_files_beside_each_file(tmp_path):
    write(tmp_path, "base.yaml", good(tmp_path))
    (tmp_path / "cpu").mkdir()
    child = write(
        tmp_path / "cpu",
        "small.yaml",
        {"extends": "../base.yaml", "study": "small", "seeds": [0], "args": ["--a=1"]},
    )
    sweep = load_sweep(child)
    assert (sweep.study, sweep.seeds, sweep.args) == ("small", [0], ["--a=1"])
    assert sweep.configs == [ROOT / "conf/data/copy.yaml"]
    assert sweep.fingerprint != load_sweep(tmp_path / "base.yaml").fingerprint


def test_search_ranges_become_optuna_distributions(tmp_path):
    data = good(
        tmp_path,
        space={"optimizer.init_args.lr": {"float": [1e-4, 1e-2], "log": True}},
        seeds=[0],
        sampler={"name": "tpe", "seed": 3},
        pruner={"name": "median", "n_warmup_steps": 5},
        trials=7,
    )
    sweep = load_sweep(write(tmp_path, "s.yaml", data))
    assert sweep.space["optimizer.init_args.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert (sweep.trials, sweep.sampler, sweep.pruner["n_warmup_steps"]) == (
        7,
        {"name": "tpe", "seed": 3},
        5,
    )


BAD = [
    ({"colour": "red"}, "colour: unknown key"),
    ({"space": {}}, "space: the search space is empty"),
    ({"space": {"x": {"float": [1.0, 0.5]}}}, "space.x.float: expected [low, high] with low <"),
    ({"space": {"x": {"float": [0.0, 1.0], "log": True}}}, "space.x.float: a log range"),
    ({"space": {"x": {"int": [1, 4], "bins": 2}}}, "space.x.bins: unknown option"),
    ({"space": {"x": {"choices": []}}}, "space.x.choices: expected a non-empty list"),
    ({"space": {"x": {"float": [0.1, 1.0]}}}, "space.x: sampler grid needs choices"),
    ({"space": {"x": {"configs": {"a": "missing.yaml"}}}}, "space.x.configs: config file"),
    ({"sampler": {"name": "annealing"}}, "sampler.name: unknown sampler 'annealing'"),
    ({"sampler": {"name": "tpe", "sed": 1}, "trials": 2, "seeds": [0]}, "sampler.sed: tpe takes"),
    ({"pruner": "patience"}, "pruner.name: unknown pruner 'patience'"),
    ({"sampler": "random", "seeds": [0]}, "trials: sampler random needs the number"),
    ({"sampler": "random", "trials": 3}, "seeds: several seeds are a grid factor"),
    ({"trials": 3}, "trials: a grid sweep runs every grid point once"),
    ({"metric": {"name": "val/loss", "direction": "up"}}, "metric.direction: 'up'"),
    ({"metric": [{"name": "params"}, {"name": "val/loss"}]}, "metric: the first objective is"),
    ({"metric": [{"name": "val/loss"}, {"name": "val/loss"}]}, "metric: an objective is named"),
    ({"metric": [{"name": "val/loss"}, {"nam": "params"}]}, "metric[1]: expected {name:"),
    ({"metric": [{"name": "val/loss"}, {"name": "params", "direction": "less"}]}, "metric[1]"),
    ({"metric": [{"name": "val/loss"}, {"name": "params"}], "pruner": "median"}, "pruner: several"),
    ({"constraints": {"params": {"below": 5}}}, "constraints.params: expected {max: X}"),
    ({"constraints": {"params": {"max": "5k"}}}, "constraints.params.max: expected a number"),
    ({"constraints": [1]}, "constraints: expected a mapping"),
    ({"configs": ["nope.yaml"]}, "configs: config file 'nope.yaml' not found"),
    ({"heartbeat": {"interval": 10, "grace": 5}}, "heartbeat.grace: must be longer"),
    ({"study": "a b"}, "study: 'a b' is not a name"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_sweep_file_names_the_key(tmp_path, change, message):
    path = write(tmp_path, "bad.yaml", good(tmp_path, **change))
    with pytest.raises(SweepFileError) as error:
        load_sweep(path)
    assert f"{path}: {message}" in str(error.value)


def test_several_objectives_and_constraints(tmp_path):
    metric = [{"name": "val/acc", "direction": "maximize"}, {"name": "params"}]
    change = {"metric": metric, "constraints": {"params": {"max": 5000}, "val/acc": {"min": 0.5}}}
    sweep = load_sweep(write(tmp_path, "s.yaml", good(tmp_path, **change)))
    assert sweep.is_multi and (sweep.metric, sweep.direction) == ("val/acc", "maximize")
    assert [(o.name, o.direction, o.measured) for o in sweep.objectives] == [
        ("val/acc", "maximize", False),
        ("params", "minimize", True),
    ]
    size, accuracy = sweep.constraints
    assert (size.key, size.violation(4000), size.violation(6000)) == ("params <= 5000", -1000, 1000)
    assert (accuracy.key, accuracy.violation(0.75)) == ("val/acc >= 0.5", -0.25)
    single = load_sweep(write(tmp_path, "one.yaml", good(tmp_path)))
    assert (
        not single.is_multi and single.constraints == () and single.fingerprint != sweep.fingerprint
    )


def test_a_multi_objective_search_gets_nsga2_and_a_study_per_objective(tmp_path):
    metric = [{"name": "val/acc", "direction": "maximize"}, {"name": "step_seconds"}]
    space = {"optimizer.init_args.lr": {"float": [1e-4, 1e-2], "log": True}}
    sampler = {"name": "nsga2", "population_size": 6, "seed": 1}
    data = good(tmp_path, metric=metric, space=space, sampler=sampler, trials=12, seeds=[0])
    sweep = load_sweep(write(tmp_path, "s.yaml", data))
    made = study_sampler(sweep)
    assert isinstance(made, optuna.samplers.NSGAIISampler) and made._population_size == 6
    study = open_study(sweep, open_storage(sweep))
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    bad = good(tmp_path, metric=metric, space=space, sampler={"name": "nsga2", "pop": 6})
    with pytest.raises(SweepFileError, match="sampler.pop: nsga2 takes no option 'pop'"):
        load_sweep(write(tmp_path, "bad.yaml", {**bad, "trials": 12, "seeds": [0]}))


def test_missing_key_is_named(tmp_path):
    data = good(tmp_path)
    del data["metric"]
    with pytest.raises(SweepFileError, match="metric: missing"):
        load_sweep(write(tmp_path, "bad.yaml", data))


def test_sweep_run_on_a_bad_file_fails_before_any_trial(tmp_path):
    path = write(tmp_path, "bad.yaml", good(tmp_path, space={}))
    result = subprocess.run(
        [sys.executable, "-m", "wave_lightning", "sweep", "run", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {path}: space: the search space is empty; " + (
        "name at least one factor"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_sweeps_load_and_fit_accepts_every_trial(path):
    sweep = load_sweep(path)
    assert grid_points(sweep) if sweep.is_grid else sweep.trials > 0
    check_points(sweep)  # raises SweepFileError naming the point fit would refuse
