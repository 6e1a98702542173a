"""The authors' statistic (a fresh probe batch every N steps, in Table 4's unit) and the
per-sequence loss distribution of the test set, checked against independent computations."""

import csv

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from wave_lightning.data import AddingTask, CopyTask
from wave_lightning.data.synthetic import mix_seed
from wave_lightning.nn import WaveRNN
from wave_lightning.tasks import PerStepClassification, Regression, SequenceClassification

PROBE = {"probe_every": 2, "probe_size": 50}


def copy_data() -> CopyTask:
    return CopyTask(
        delay=3, memory_length=4, batch_size=8, train_batches=3, val_size=8, test_size=24
    )


def copy_task(**kwargs) -> PerStepClassification:
    torch.manual_seed(0)
    return PerStepClassification(WaveRNN(10, 8, 2), 10, **kwargs)


def fitted(task, data, tmp_path, steps: int = 4) -> Trainer:
    task.configure_optimizers = lambda: torch.optim.Adam(task.parameters(), lr=1e-2)
    trainer = Trainer(
        max_steps=steps,
        logger=CSVLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, datamodule=data)
    return trainer


def logged(tmp_path, key: str) -> dict[int, float]:
    with open(tmp_path / "metrics.csv", newline="") as handle:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(handle) if r.get(key)}


def independent_batch(data, seed: int, index: int, size: int = 50):
    return data.sample(size, torch.Generator().manual_seed(mix_seed(seed, index)))


def test_the_probe_is_the_mean_cross_entropy_of_a_fresh_batch_over_its_size(tmp_path):
    data, task = copy_data(), copy_task(**PROBE)
    fitted(task, data, tmp_path)
    probes = logged(tmp_path, "probe/loss")
    assert sorted(probes) == [2, 4]
    x, y = independent_batch(data, seed=0, index=2)  # step 4 = probe 2, with the final weights
    task.eval()
    with torch.no_grad():
        logits = task(x)
    picked = logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (50, T)
    expected = float(-picked.mean() / 50)
    assert probes[4] == pytest.approx(expected, rel=1e-6)
    assert logged(tmp_path, "probe/best")[4] == pytest.approx(min(probes.values()), rel=1e-6)
    assert task.probe == {"last": probes[4], "best": min(probes.values())}


def test_reruns_draw_the_same_probe_batches_and_another_seed_others():
    data = copy_data()
    one, other = copy_task(**PROBE), copy_task(**PROBE, probe_seed=1)
    for task in (one, other):
        task.trainer = Trainer(logger=False)
        task.trainer.datamodule = data
    assert torch.equal(one.probe_batch(3)[0], one.probe_batch(3)[0])
    assert torch.equal(one.probe_batch(3)[0], independent_batch(data, 0, 3)[0])
    assert not torch.equal(one.probe_batch(3)[0], other.probe_batch(3)[0])
    assert not torch.equal(one.probe_batch(3)[0], one.probe_batch(4)[0])


def test_the_adding_probe_is_the_mse_of_a_fresh_batch(tmp_path):
    data = AddingTask(seq_len=6, batch_size=8, train_batches=3, val_size=8, test_size=8)
    torch.manual_seed(0)
    task = Regression(WaveRNN(2, 4, 2), 1, **PROBE)
    fitted(task, data, tmp_path)
    x, y = independent_batch(data, seed=0, index=2)
    task.eval()
    with torch.no_grad():
        expected = float(((task(x) - y) ** 2).mean())
    assert logged(tmp_path, "probe/loss")[4] == pytest.approx(expected, rel=1e-6)


def test_the_test_set_distribution_of_per_sequence_losses(tmp_path):
    data, task = copy_data(), copy_task(test_distribution=True, **PROBE)
    trainer = fitted(task, data, tmp_path)
    (results,) = trainer.test(task, datamodule=data, verbose=False)
    x, y = data.test_set.tensors
    task.eval()
    with torch.no_grad():
        logits = task(x)
    per_sequence = -logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
    per_sequence = per_sequence.double()
    assert results["test/seq_loss_median"] == pytest.approx(
        float(per_sequence.quantile(0.5)), rel=1e-5
    )
    assert results["test/seq_loss_p90"] == pytest.approx(float(per_sequence.quantile(0.9)), 1e-5)
    assert results["test/seq_loss_max"] == pytest.approx(float(per_sequence.max()), rel=1e-5)
    exact = (logits.argmax(-1) == y).all(1).float().mean()
    assert results["test/exact_recall"] == pytest.approx(float(exact))
    assert results["test/probe_last"] == pytest.approx(task.probe["last"])
    assert results["test/probe_best"] == pytest.approx(task.probe["best"])


def test_testing_an_earlier_checkpoint_after_fit_keeps_the_runs_last_and_best(tmp_path):
    data, task = copy_data(), copy_task(**PROBE)
    every_step = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    task.configure_optimizers = lambda: torch.optim.Adam(task.parameters(), lr=1e-2)
    trainer = Trainer(
        max_steps=4, logger=CSVLogger(tmp_path, name="", version=""), callbacks=[every_step],
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=data)
    probes = logged(tmp_path, "probe/loss")
    early = next((tmp_path / "ckpt").glob("*step=2.ckpt"))
    (results,) = trainer.test(
        task, datamodule=data, ckpt_path=early, verbose=False, weights_only=False
    )
    assert results["test/probe_last"] == pytest.approx(probes[4])  # the run's, not step 2's
    assert results["test/probe_best"] == pytest.approx(min(probes.values()))
    # a test in a process of its own reads the checkpoint's record: the step-4 checkpoint was
    # written before that step's probe (callbacks' batch-end hooks run before the module's)
    later = next((tmp_path / "ckpt").glob("*step=4.ckpt"))
    alone = copy_task(**PROBE)
    (results,) = Trainer(logger=False).test(
        alone, datamodule=data, ckpt_path=later, verbose=False, weights_only=False
    )
    assert results["test/probe_last"] == pytest.approx(probes[2])


def test_the_probe_survives_a_checkpoint():
    task, checkpoint = copy_task(**PROBE), {}
    task.probe = {"last": 0.25, "best": 0.125}
    task.on_save_checkpoint(checkpoint)
    resumed = copy_task(**PROBE)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.probe == {"last": 0.25, "best": 0.125}


def test_a_probe_needs_a_positive_interval_and_a_generated_task():
    with pytest.raises(ValueError, match="probe_every"):
        copy_task(probe_every=0)
    task = SequenceClassification(WaveRNN(1, 4), 10, probe_every=5)
    task.trainer = Trainer(logger=False)
    task.trainer.datamodule = object()
    with pytest.raises(ValueError, match="probe_every needs a generated task"):
        task.setup("fit")
