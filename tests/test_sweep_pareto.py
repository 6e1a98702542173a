"""Multi-objective sweeps end to end: objectives read from the runs, measured size and step
time, constraints, the Pareto front in status and report."""

import csv

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from tests.sweeps import metric_column, sweep_cli, write_sweep
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import open_storage

SIZE = "model.init_args.layer.init_args.n_hid"
LIMIT = 500


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory) -> dict:
    """A 3-point grid, loss against parameters, with the largest ring over the size limit."""
    folder = tmp_path_factory.mktemp("pareto")
    path = write_sweep(
        folder,
        {SIZE: {"choices": [4, 8, 16]}},
        seeds=[0],
        args=["--trainer.max_steps=6", "--trainer.val_check_interval=1"],
        metric=[{"name": "val/loss", "direction": "minimize"}, {"name": "params"}],
        constraints={"params": {"max": LIMIT}},
    )
    result = sweep_cli(folder, "run", str(path), "--workers", "1")
    assert result.returncode == 0, result.stderr
    sweep = load_sweep(path)
    study = optuna.load_study(study_name=sweep.study, storage=open_storage(sweep))
    report = sweep_cli(folder, "report", str(path))
    assert report.returncode == 0, report.stderr
    return {"folder": folder, "path": path, "sweep": sweep, "study": study, "log": result.stdout}


def trainable(run) -> int:
    """The run's model parameters, counted from its checkpoint."""
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return sum(t.numel() for name, t in state.items() if name.startswith("model."))


def front_by_hand(trials, limit: int) -> set[int]:
    """Trials within the limit that no other such trial dominates (both objectives minimised)."""
    feasible = [t for t in trials if t.values[1] <= limit]

    def dominates(a, b) -> bool:
        pairs = list(zip(a.values, b.values, strict=True))
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    return {t.number for t in feasible if not any(dominates(o, t) for o in feasible)}


@pytest.mark.slow
def test_each_trial_records_its_objectives_from_its_run(pareto_run):
    trials = pareto_run["study"].get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    sizes = []
    for trial in trials:
        run = pareto_run["sweep"].root / trial.user_attrs["run_dir"]
        loss, params = trial.values
        assert loss == min(metric_column(run, "val/loss"))
        assert params == trial.user_attrs["params"] == trainable(run)
        assert 0 < trial.user_attrs["step_seconds"] < trial.duration.total_seconds()
        sizes.append(params)
        violation = trial.constraints[f"params <= {LIMIT}"]
        assert violation == params - LIMIT
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert sizes[1] <= LIMIT < sizes[2]  # the 16-unit rings are over the limit


@pytest.mark.slow
def test_the_front_is_the_feasible_non_dominated_trials(pareto_run):
    study = pareto_run["study"]
    front = {t.number for t in study.best_trials}
    assert front == front_by_hand(study.get_trials(), LIMIT)
    largest = max(study.get_trials(), key=lambda t: t.values[1])
    assert largest.number not in front
    status = sweep_cli(pareto_run["folder"], "status", str(pareto_run["path"])).stdout
    assert f"Pareto front: {len(front)} trials" in status
    for number in front:
        trial = study.trials[number]
        values = f"val/loss={trial.values[0]:.6g} params={trial.values[1]:.6g}"
        assert f"Pareto front: trial {number} {values} " in status
    assert "Pareto front:" in pareto_run["log"]


@pytest.mark.slow
def test_the_report_lists_the_front_with_one_config_per_trial(pareto_run):
    study, report = pareto_run["study"], pareto_run["sweep"].root / "report"
    front = sorted(t.number for t in study.best_trials)
    configs = sorted(p.name for p in (report / "best").glob("*.yaml"))
    assert configs == [f"trial-{n:04d}.yaml" for n in front]
    for number in front:
        config = yaml.safe_load((report / "best" / f"trial-{number:04d}.yaml").read_text())
        size = study.trials[number].params[SIZE]
        assert config["model"]["init_args"]["layer"]["init_args"]["n_hid"] == size
        assert config["trainer"]["callbacks"] is None and config["ckpt_path"] is None
    table = (report / "pareto.md").read_text()
    assert f"{len(front)} of 3 complete trials are on the front; 2 meet the constraints" in table
    listed = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert listed[2:] == [str(n) for n in front]
    assert (report / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert not (report / "best.yaml").exists()
    with open(report / "trials.csv", newline="") as handle:
        rows = {int(r["number"]): r for r in csv.DictReader(handle)}
    for trial in study.get_trials():
        assert float(rows[trial.number]["val/loss"]) == trial.values[0]
        assert int(float(rows[trial.number]["params"])) == trial.values[1]
