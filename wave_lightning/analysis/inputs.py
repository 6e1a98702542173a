"""Inputs to drive a layer for analysis: a batch of the run's own data (read from its config),
random impulses or spike trains; one builder for `wave-lightning analyze` and WaveAnalysis."""

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn

from ..run.folder import RunFolder
from .options import AnalysisOptions
from .record import impulse_inputs
from .spikes import spike_trains

STAGES = ("test", "val")


def run_config_path(ckpt_path: str | Path) -> Path:
    """The config.yaml of the run that wrote a checkpoint."""
    return RunFolder.of_checkpoint(ckpt_path).config


def load_datamodule(config_path: str | Path) -> LightningDataModule:
    """The DataModule of a run's saved config.yaml (its `data` class_path and init_args)."""
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no run config at {path}: pass --config PATH, or --inputs impulses to analyse "
            "without the run's data"
        )
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config.get("data"), dict):
        raise ValueError(f"{path} has no `data` section (class_path and init_args)")
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    return parser.instantiate(parser.parse_object({"data": config["data"]})).data


def data_batch(datamodule: LightningDataModule, examples: int, stage: str = "test") -> Tensor:
    """The first `examples` inputs of a fresh DataModule's test (or val) set, as (n, T, input)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    datamodule.setup(stage if stage == "test" else "validate")
    loader = datamodule.test_dataloader() if stage == "test" else datamodule.val_dataloader()
    return first_inputs(loader, examples)


def first_inputs(loader: Iterable, examples: int) -> Tensor:
    """The inputs of a loader's first batches, cut to `examples` sequences."""
    batches, count = [], 0
    for batch in loader:
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        batches.append(inputs)
        count += len(inputs)
        if count >= examples:
            break
    return torch.cat(batches)[:examples].float()


def driving_inputs(
    options: AnalysisOptions,
    layer: nn.Module,
    data: Callable[[int], Tensor],
    seq_len: int | None = None,
) -> Tensor:
    """The options.examples sequences that drive the layer: data(n), the run's first n inputs
    (called only for inputs "data"), else impulses or spike trains drawn from options.seed."""
    if options.inputs == "data":
        return data(options.examples)
    generator = torch.Generator().manual_seed(options.seed)
    if options.inputs == "spikes":
        steps = options.spike_window(layer)
        return spike_trains(options.examples, steps, layer.input_size, options.spikes[0], generator)
    steps = options.impulse_steps(layer, seq_len)
    return impulse_inputs(options.examples, steps, layer.input_size, options.impulses, generator)
