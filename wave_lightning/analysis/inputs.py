"""Inputs to drive a layer for analysis: a batch of the run's own data, read from its config."""

from collections.abc import Iterable
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule
from torch import Tensor

STAGES = ("test", "val")


def run_config_path(ckpt_path: str | Path) -> Path:
    """<run_dir>/config.yaml for a checkpoint in <run_dir>/checkpoints/."""
    return Path(ckpt_path).resolve().parent.parent / "config.yaml"


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
