"""Memory capacity: recall accuracy on the recalled steps only, and the delay horizon of
known curves."""

import json
from pathlib import Path

import optuna
import torch
from optuna.distributions import CategoricalDistribution

from wave_lightning.analysis.capacity import (
    checkpoint_recall,
    delay_horizon,
    horizons,
    recall_accuracy,
    write_capacity_report,
)
from wave_lightning.analysis.inputs import load_datamodule
from wave_lightning.analysis.sheets import layer_size
from wave_lightning.cli import main
from wave_lightning.nn import IRNN, LocalRNN, WaveRNN, WaveSheetRNN
from wave_lightning.tasks import load_task

from .helpers import ROOT


def test_recall_accuracy_counts_only_the_recalled_steps():
    target = torch.tensor([[0, 0, 3, 4], [0, 0, 5, 6]])
    prediction = torch.nn.functional.one_hot(torch.tensor([[7, 7, 3, 4], [7, 7, 5, 1]]), 8)
    assert recall_accuracy(prediction.float(), target, memory_length=2) == 0.75


def test_the_horizon_is_the_longest_delay_with_every_shorter_one_solved():
    assert delay_horizon({0: 1.0, 10: 0.995, 20: 0.99, 30: 0.5}) == 20
    assert delay_horizon({10: 1.0, 20: 0.98, 30: 1.0}) == 10  # a later success does not count
    assert delay_horizon({0: 0.9, 10: 1.0}) is None
    assert delay_horizon({5: 1.0, 0: 1.0}) == 5


def test_horizons_of_a_synthetic_ring_curve_grow_with_the_ring_length():
    # a ring of N units recalls perfectly until its wave wraps (delay >= N), then at chance
    rows = [
        {"layer": layer, "n_hid": n, "delay": d, "seed": s,
         "recall_accuracy": (1.0 if d < n else 0.125) - 0.01 * s}
        for layer in ("wave_ring", "local_ring") for n in (8, 16, 32)
        for d in (0, 4, 8, 12, 16, 24, 32, 48) for s in (0, 1)
    ]  # fmt: skip
    result = horizons(rows, group=["layer", "n_hid"])
    expected = {(layer, n): h for layer in ("local_ring", "wave_ring") for n, h in
                ((8, 4), (16, 12), (32, 24))}  # fmt: skip
    assert result == expected
    # the seed mean decides: 1.0 and 0.99 average to 0.995
    assert horizons(rows, group=["layer", "n_hid"], threshold=0.996)[("wave_ring", 8)] is None


def fit_tiny(run: Path) -> None:
    """A one-step copy-task run of a ring of 8 units in `run` (delay 2, memory length 2)."""
    main([
        "fit", "--config", str(ROOT / "conf/data/copy.yaml"),
        "--config", str(ROOT / "conf/model/wrnn.yaml"),
        "--model.layer.init_args.n_hid", "8", "--model.layer.init_args.n_ch", "1",
        "--model.layer.init_args.impl", "fast",
        "--data.delay", "2", "--data.memory_length", "2", "--data.batch_size", "4",
        "--data.train_batches", "1", "--data.val_size", "8", "--data.test_size", "8",
        "--trainer.max_steps", "1", "--test_after_fit", "false",
        "--trainer.default_root_dir", str(run),
    ])  # fmt: skip


def test_checkpoint_recall_matches_the_model_on_its_own_test_data(tmp_path):
    fit_tiny(tmp_path)
    ckpt = tmp_path / "checkpoints/last.ckpt"
    data = load_datamodule(tmp_path / "config.yaml")
    data.setup("test")
    x, y = (torch.cat(parts) for parts in zip(*data.test_dataloader(), strict=True))
    with torch.no_grad():
        recalled = load_task(ckpt).eval().model(x)[:, -2:].argmax(-1) == y[:, -2:]
    assert y.shape == (8, 6) and y[:, :-2].eq(0).all()  # 8 test sequences, blanks until the recall
    assert checkpoint_recall(ckpt, examples=8) == recalled.double().mean().item()


def test_the_capacity_report_reads_every_trials_checkpoint_and_writes_the_horizons(tmp_path):
    fit_tiny(tmp_path / "runs" / "trial-0000")
    distributions = {
        "layer": CategoricalDistribution(["wave_ring"]),
        "model.init_args.layer.init_args.n_hid": CategoricalDistribution([8]),
        "model.init_args.layer.init_args.n_ch": CategoricalDistribution([1]),
        "data.init_args.delay": CategoricalDistribution([2, 4]),
    }
    trials = [
        optuna.trial.create_trial(
            params={"layer": "wave_ring", "model.init_args.layer.init_args.n_hid": 8,
                    "model.init_args.layer.init_args.n_ch": 1, "data.init_args.delay": delay},
            distributions=distributions, value=1.0, user_attrs={"run_dir": "trial-0000"},
        )
        for delay in (2, 4)
    ]  # fmt: skip
    runs = [(trial, tmp_path / "runs") for trial in trials]
    written = write_capacity_report(runs, tmp_path / "out", examples=8)
    assert [p.name for p in written] == ["capacity.json", "capacity.png"] and written[1].is_file()
    report = json.loads(written[0].read_text())
    accuracy = checkpoint_recall(tmp_path / "runs/trial-0000/checkpoints/last.ckpt", examples=8)
    assert [(r["delay"], r["N"], r["recall_accuracy"]) for r in report["runs"]] == [
        (2, 8, accuracy), (4, 8, accuracy)
    ]  # fmt: skip
    assert accuracy < 0.99  # one step of training: no delay is solved
    assert report["horizons"] == [{"layer": "wave_ring", "n_ch": 1, "N": 8, "horizon": None}]


def test_the_size_of_a_ring_sheet_and_dense_layer_is_the_length_a_wave_travels():
    assert layer_size(WaveRNN(3, n_hid=12, n_ch=2)) == (2, 12)
    assert layer_size(LocalRNN(3, n_hid=7, n_ch=3)) == (3, 7)
    assert layer_size(WaveSheetRNN(3, height=4, width=9, n_ch=2)) == (2, 9)
    assert layer_size(WaveSheetRNN(3, height=6, width=5)) == (1, 6)
    assert layer_size(IRNN(3, hidden_size=20)) == (1, 20)
