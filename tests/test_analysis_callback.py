"""WaveAnalysis callback: metrics, TensorBoard figures and PNGs during a short fit."""

import csv

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from wave_lightning.analysis import WaveAnalysis
from wave_lightning.analysis.spikes import spike_decoding
from wave_lightning.data import CopyTask
from wave_lightning.nn import WaveRNN
from wave_lightning.tasks import PerStepClassification


def fit(tmp_path, callback: WaveAnalysis, epochs: int) -> Trainer:
    """A tiny copy-task fit of a shift-initialised wRNN with CSV and TensorBoard loggers."""
    torch.manual_seed(0)
    sizes = {"batch_size": 8, "train_batches": 2, "val_size": 8, "test_size": 8}
    data = CopyTask(delay=4, memory_length=2, **sizes)
    layer = WaveRNN(data.input_size, n_hid=12, n_ch=2)
    task = PerStepClassification(layer, data.output_size, seq_len=data.seq_len)
    task.configure_optimizers = lambda: torch.optim.Adam(task.parameters(), lr=1e-3)
    loggers = [
        CSVLogger(tmp_path, name="", version=""),
        TensorBoardLogger(tmp_path, name="tensorboard", version=""),
    ]
    trainer = Trainer(
        max_epochs=epochs,
        logger=loggers,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, datamodule=data)
    return trainer


def logged(tmp_path, name: str) -> list[float]:
    with open(tmp_path / "metrics.csv") as file:
        return [float(row[name]) for row in csv.DictReader(file) if row.get(name)]


def test_wave_analysis_logs_measures_tensorboard_figures_and_pngs(tmp_path):
    callback = WaveAnalysis(inputs="impulses", examples=4, steps=24, onset_examples=128)
    fit(tmp_path, callback, epochs=2)
    pngs = sorted(p.name for p in (tmp_path / "waves").iterdir())
    assert pngs == [f"{kind}_epoch{e:04d}.png" for kind in ("fft", "spacetime") for e in (0, 1)]
    speeds = logged(tmp_path, "waves/speed")
    assert len(speeds) == 2 and all(abs(speed - 1.0) < 0.05 for speed in speeds)
    assert all(score > 0.9 for score in logged(tmp_path, "waves/score"))
    assert logged(tmp_path, "waves/onset_delay_acc") == [1.0, 1.0]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"waves/spacetime", "waves/fft"} <= set(events.Tags()["images"])
    assert len(events.Images("waves/fft")) == 2


def test_wave_analysis_runs_every_n_epochs_on_a_fixed_data_batch(tmp_path):
    callback = WaveAnalysis(every_n_epochs=2, examples=3, onset_examples=0)
    fit(tmp_path, callback, epochs=3)
    assert sorted(p.name for p in (tmp_path / "waves").iterdir()) == [
        "fft_epoch0001.png",
        "spacetime_epoch0001.png",
    ]
    assert callback.batch is not None and callback.batch.shape == (3, 8, 10)
    assert len(logged(tmp_path, "waves/score")) == 1
    assert logged(tmp_path, "waves/onset_delay_acc") == []


def test_wave_analysis_logs_the_spike_decoding_of_the_layer_it_was_given(tmp_path):
    callback = WaveAnalysis(inputs="impulses", examples=2, steps=8, onset_examples=0,
                            spike_examples=128, spikes=2, spike_steps=6)  # fmt: skip
    trainer = fit(tmp_path, callback, epochs=2)
    balanced, exact = (
        logged(tmp_path, "waves/spike_balanced_acc"),
        logged(tmp_path, "waves/spike_exact"),
    )
    assert len(balanced) == len(exact) == 2
    final = spike_decoding(trainer.lightning_module.model.layer, 2, 6, 128)  # after the last epoch
    assert (balanced[-1], exact[-1]) == pytest.approx((final.balanced_accuracy, final.exact))


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"every_n_epochs": 0}, "every_n_epochs"), ({"inputs": "x"}, "inputs")]
)
def test_bad_callback_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WaveAnalysis(**kwargs)


def test_wave_analysis_names_a_module_without_a_recurrent_layer():
    with pytest.raises(TypeError, match="model.layer"):
        WaveAnalysis().on_train_epoch_end(Trainer(logger=False), LightningModule())
