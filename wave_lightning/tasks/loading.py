"""Load any task checkpoint written by the CLI without knowing its class in advance."""

import importlib
import warnings
from pathlib import Path

import torch

from .base import SequenceTask


def load_task(ckpt_path: str | Path, map_location: str = "cpu") -> SequenceTask:
    """The LightningModule saved in `ckpt_path`, of the class recorded in its hyper-parameters."""
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if class_path is None:
        raise ValueError(f"{ckpt_path} was not written by wave-lightning (no task class recorded)")
    module_name, name = class_path.rsplit(".", 1)
    task_class = getattr(importlib.import_module(module_name), name)
    with warnings.catch_warnings():
        # rebuilt from the saved config, the task gets its layer as a module: Lightning's advice
        # to leave it out of the hyper-parameters is for runs, whose config keeps the layer's
        warnings.filterwarnings("ignore", "Attribute 'layer' is an instance of `nn.Module`")
        return task_class.load_from_checkpoint(ckpt_path, map_location=map_location)
