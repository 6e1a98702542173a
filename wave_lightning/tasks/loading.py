"""Load any task checkpoint written by the CLI without knowing its class in advance."""

import importlib
import warnings
from pathlib import Path

from ..run.checkpoints import CheckpointError, load_checkpoint
from .base import SequenceTask


def load_task(ckpt_path: str | Path, map_location: str = "cpu") -> SequenceTask:
    """The LightningModule saved in `ckpt_path` (loaded weights-only), of its recorded class."""
    checkpoint = load_checkpoint(ckpt_path, map_location)
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if class_path is None:
        raise CheckpointError(f"{ckpt_path}: not written by wave-lightning (no task class in it)")
    module_name, name = class_path.rsplit(".", 1)
    task_class = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(task_class, type) and issubclass(task_class, SequenceTask)):
        raise CheckpointError(f"{ckpt_path}: its task class {class_path} is no SequenceTask")
    with warnings.catch_warnings():
        # rebuilt from the saved config, the task gets its layer as a module: Lightning's advice
        # to leave it out of the hyper-parameters is for runs, whose config keeps the layer's
        warnings.filterwarnings("ignore", "Attribute 'layer' is an instance of `nn.Module`")
        return task_class.load_from_checkpoint(
            ckpt_path, map_location=map_location, weights_only=True
        )
