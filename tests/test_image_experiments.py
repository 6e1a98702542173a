"""Every sequential-image and MNIST-1D experiment config runs end to end on tiny files, and the
reported test metric is that of the best-validation checkpoint."""

import csv
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT
from tests.image_files import write_cifar10, write_mnist
from wave_lightning.cli import main
from wave_lightning.data import MNIST1D
from wave_lightning.fit import WaveCLI
from wave_lightning.tasks import load_task

EXPERIMENTS = sorted(
    path
    for prefix in ("smnist", "psmnist", "nscifar10", "mnist1d")
    for path in (ROOT / "conf" / "experiment").glob(f"{prefix}_*.yaml")
)


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """Tiny batches gain nothing from threads; on a shared machine threads only spin."""
    torch_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_mnist(root, n_train=20, n_test=8)
    write_cifar10(root, per_batch=4, n_test=8)
    return root


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_every_table_row_has_a_config():
    names = {path.stem for path in EXPERIMENTS}
    for data in ("smnist", "psmnist"):
        assert {f"{data}_{m}" for m in ("wrnn", "wrnn_mlp", "irnn", "lstm", "gru")} <= names
    assert {f"nscifar10_{m}" for m in ("wrnn", "irnn", "lstm", "gru")} <= names
    assert {f"mnist1d_{m}" for m in ("wrnn", "irnn", "lstm", "gru")} <= names


@pytest.mark.slow
@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda path: path.stem)
def test_experiment_config_fast_dev_run(config, data_dir, tmp_path):
    args = ["fit", "--config", str(config), "--trainer.fast_dev_run", "1"]
    args += ["--trainer.default_root_dir", str(tmp_path / "run")]
    args += ["--data.init_args.batch_size", "4"]
    args += ["--data.init_args.num_workers", "0", "--data.init_args.pin_memory", "false"]
    if not config.stem.startswith("mnist1d"):
        args += ["--data.init_args.data_dir", str(data_dir), "--data.init_args.val_size", "4"]
    if config.stem.startswith("nscifar10"):
        args += ["--data.init_args.verify_md5", "false"]
    cli = WaveCLI(args=args)
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 1
    assert {"test/loss", "test/acc"} <= set(metrics)
    assert torch.isfinite(metrics["test/loss"]) and 0.0 <= float(metrics["test/acc"]) <= 1.0


@pytest.mark.slow
def test_reported_test_accuracy_is_that_of_the_best_validation_checkpoint(tmp_path):
    run = tmp_path / "run"
    main(
        [
            "fit",
            "--config",
            str(ROOT / "conf" / "experiment" / "mnist1d_wrnn_normal_v.yaml"),
            "--trainer.max_epochs",
            "4",
            "--trainer.limit_train_batches",
            "8",
            "--trainer.default_root_dir",
            str(run),
        ]
    )
    metrics = read_metrics(run)
    val = [(float(r["val/acc"]), int(r["epoch"])) for r in metrics if r.get("val/acc")]
    best_acc = max(acc for acc, _ in val)
    best_epoch = next(epoch for acc, epoch in val if acc == best_acc)
    best = [p for p in (run / "checkpoints").glob("epoch=*.ckpt")]
    assert [p.name.split("-")[0] for p in best] == [f"epoch={best_epoch}"]
    reported = [float(r["test/acc"]) for r in metrics if r.get("test/acc")]

    task = load_task(best[0]).eval()
    data = MNIST1D()
    data.setup("test")
    x = torch.stack([data.test_set[i][0] for i in range(len(data.test_set))])
    with torch.no_grad():
        accuracy = (task(x).argmax(-1) == data.test_set.labels).float().mean().item()
    assert reported == [pytest.approx(accuracy, abs=1e-6)]


@pytest.mark.slow
def test_mnist1d_wrnn_beats_chance_by_a_wide_margin_in_four_epochs(tmp_path):
    config = ROOT / "conf" / "experiment" / "mnist1d_wrnn_normal_v.yaml"
    args = ["fit", "--config", str(config), "--trainer.max_epochs", "4"]
    cli = WaveCLI(args=args + ["--trainer.default_root_dir", str(tmp_path / "run")])
    assert cli.trainer.current_epoch == 4
    assert float(cli.trainer.callback_metrics["test/acc"]) > 0.3  # chance is 0.1
