"""Worker pieces without training: GPU assignment, pruning reports, claiming grid points."""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from tests.helpers import ROOT
from wave_lightning.sweep import worker
from wave_lightning.sweep.claims import claim_waiting
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import open_storage, open_study
from wave_lightning.sweep.trial_callback import PRUNED_FILE, TrialReporter


def sweep_file(tmp_path: Path, **extra) -> Path:
    data = {
        "study": "unit",
        "configs": [str(ROOT / "conf/data/copy.yaml")],
        "space": {"optimizer.init_args.lr": {"choices": [0.1, 0.01]}},
        "seeds": [0, 1],
        "metric": {"name": "val/loss", "direction": "minimize"},
        "root": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Recorder:
    """Stands in for subprocess.Popen: records commands and environments, exits 0."""

    calls: list = []

    def __init__(self, command, env):
        Recorder.calls.append((command, env))
        self.pid = len(Recorder.calls)

    def poll(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("gpus", "visible", "flag"),
    [(["0", "3"], ["0", "3"], []), (None, ["", ""], ["--threads", "4"])],
)
def test_launch_gives_each_worker_one_gpu_or_none(tmp_path, monkeypatch, gpus, visible, flag):
    monkeypatch.setattr(subprocess, "Popen", Recorder)
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 8)
    Recorder.calls = []
    sweep = load_sweep(sweep_file(tmp_path))
    assert worker.launch(sweep, 2, gpus, None) == 0
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in Recorder.calls] == visible
    for command, _ in Recorder.calls:
        assert command[1:] == ["-m", "wave_lightning", "sweep", "worker", str(sweep.path), *flag]


def test_grid_points_are_claimed_once_each_and_then_none(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path))
    study = open_study(sweep, open_storage(sweep))
    other = open_study(sweep, open_storage(sweep))  # a second worker on the same journal
    claimed = [claim_waiting(s) for s in (study, other, other, study)]
    assert [t.number for t in claimed] == [0, 1, 2, 3]
    assert claim_waiting(study) is None and claim_waiting(other) is None
    assert worker.new_trial(study, sweep) is None  # a grid never asks the sampler
    assert [t.system_attrs["fixed_params"] for t in study.get_trials()] == [
        {"optimizer.init_args.lr": lr, "seed": seed} for lr in (0.1, 0.01) for seed in (0, 1)
    ]
    assert not worker.is_finished(study, sweep)
    for trial in claimed:
        study.tell(trial, 1.0)
    assert worker.is_finished(study, sweep)


def test_reporter_reports_each_validation_and_prunes(tmp_path):
    path = sweep_file(tmp_path, pruner={"name": "threshold", "upper": 1.0})
    sweep = load_sweep(path)
    study = open_study(sweep, open_storage(sweep))
    trial = claim_waiting(study)
    reporter = TrialReporter(str(path), trial.number)
    reporter.setup(None, None, "fit")
    trainer = SimpleNamespace(
        sanity_checking=False, global_step=4, default_root_dir=str(tmp_path), callback_metrics={}
    )
    trainer.callback_metrics["val/loss"] = torch.tensor(0.5)
    reporter.on_validation_end(trainer, None)
    trainer.global_step, trainer.callback_metrics["val/loss"] = 8, torch.tensor(2.0)
    with pytest.raises(optuna.TrialPruned, match="pruned at step 8 with val/loss=2"):
        reporter.on_validation_end(trainer, None)
    assert study.get_trials()[0].intermediate_values == {4: 0.5, 8: 2.0}
    assert json.loads((tmp_path / PRUNED_FILE).read_text()) == {"step": 8, "value": 2.0}
    assert study.get_trials()[0].state == TrialState.RUNNING


class Exits:
    """Stands in for a worker process: poll() is None `polls` times, then `code`."""

    def __init__(self, pid: int, code: int, polls: int) -> None:
        self.pid, self.code, self.polls = pid, code, polls

    def poll(self) -> int | None:
        self.polls -= 1
        return self.code if self.polls < 0 else None


@pytest.mark.parametrize(
    ("codes", "status", "said"),
    [
        ([0, 0], 0, []),
        ([0, -9], 137, ["worker 2 was killed by SIGKILL"]),
        ([1, 0], 1, ["worker 1 exited with 1"]),
    ],
)
def test_launcher_reaps_each_worker_and_exits_with_the_first_failure(codes, status, said):
    # the first worker exits last: an in-order wait would leave the second a zombie meanwhile
    processes = [Exits(1, codes[0], polls=3), Exits(2, codes[1], polls=0)]
    lines = []
    assert worker.wait_all(processes, lines.append) == status
    assert lines == said
    assert [p.polls for p in processes] == [-1, -1]  # each polled until it exited, then no more
