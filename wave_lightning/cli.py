"""`wave-lightning`: a LightningCLI over the layers, tasks and data of this package."""

import importlib
import sys
from pathlib import Path

import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from torch.optim import Optimizer

from .console import EpochLines, quiet_known_noise
from .data.batching import per_device_batch_size
from .devices import check_devices
from .loggers import default_loggers
from .preemption import PreemptionCheckpoint, newest_checkpoint
from .tasks import SequenceTask


def class_name(config, key: str) -> str:
    """The class name in a class_path config value, or `key` when there is none."""
    path = getattr(config, "class_path", None) if config is not None else None
    return path.rsplit(".", 1)[-1] if path else key


DESCRIPTION = (
    "Train and evaluate wave-based RNNs: LightningCLI subcommands below. "
    "Also `wave-lightning sweep run|worker|status|report|dashboard FILE` (Optuna sweeps) and "
    "`wave-lightning analyze --ckpt PATH` (wave measures and plots)."
)


def last_checkpoint(dirpath: str) -> ModelCheckpoint:
    """Writes checkpoints/last.ckpt at every epoch end, whatever the monitored metric did.

    ModelCheckpoint(save_last=True) rewrites last.ckpt only when it also saves a top-k
    checkpoint (Lightning 2.6), so a resume could go back to the last improvement.
    """
    return ModelCheckpoint(dirpath=dirpath, filename="last", enable_version_counter=False)


class WaveCLI(LightningCLI):
    """LightningCLI with the run directory, checkpoints, loggers and data links of this package.

    A run lives in trainer.default_root_dir (default runs/<Data>-<Layer>): config.yaml,
    metrics.csv, tensorboard/ and checkpoints/ (best, last.ckpt, and preempted.ckpt when SIGTERM
    or SIGUSR1 stopped it; `--ckpt_path last` resumes from the newest).
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault(
            "trainer_defaults",
            {"enable_progress_bar": sys.stderr.isatty(), "callbacks": [EpochLines()]},
        )
        kwargs.setdefault("parser_kwargs", {"prog": "wave-lightning", "description": DESCRIPTION})
        super().__init__(
            SequenceTask,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}},
                # the best checkpoint after validation: a resume at an epoch's end, which runs
                # that end's hooks again without metrics, then warns of no monitored key
                "checkpoint.save_on_train_epoch_end": False,
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test the best checkpoint (by checkpoint.monitor) on the test set",
        )
        parser.link_arguments(
            "data.input_size", "model.init_args.layer.init_args.input_size", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.output_size", "model.init_args.output_size", apply_on="instantiate"
        )
        parser.link_arguments("data.seq_len", "model.init_args.seq_len", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_devices(config.trainer.accelerator, config.trainer.devices)
        if config.trainer.default_root_dir is None:
            data = class_name(config.data, "data")
            layer = class_name(config.model.init_args.get("layer"), "layer")
            config.trainer.default_root_dir = str(Path("runs") / f"{data}-{layer}")
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(config.trainer.default_root_dir) / "checkpoints")

    def instantiate_trainer(self, **kwargs):
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(trainer_config["default_root_dir"])
        trainer = super().instantiate_trainer(**kwargs)
        checkpoint_dir = self._get(self.config_init, "checkpoint").dirpath
        self.last_checkpoint = last_checkpoint(checkpoint_dir)
        # after the monitored ModelCheckpoint, which stays trainer.checkpoint_callback (the best)
        trainer.callbacks += [self.last_checkpoint, PreemptionCheckpoint(checkpoint_dir)]
        return trainer

    def check_batch_split(self) -> None:
        """Fail before any process starts when the global batch does not split over them."""
        batch_size = getattr(self.datamodule, "batch_size", None)
        if isinstance(batch_size, int):
            per_device_batch_size(batch_size, self.trainer)

    before_validate = before_test = before_predict = check_batch_split

    def before_fit(self) -> None:
        """Check the batch split; resolve `--ckpt_path last` (see newest_checkpoint)."""
        self.check_batch_split()
        config = self.config_init.fit
        if config.ckpt_path == "last":
            checkpoint_dir = self._get(self.config_init, "checkpoint").dirpath
            config.ckpt_path = newest_checkpoint(self.trainer.default_root_dir, checkpoint_dir)

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        # read before testing: loading the best checkpoint restores the callback's older state
        saved = f"last: {self.last_checkpoint.best_model_path}, best: {checkpoint.best_model_path}"
        if self.config.fit.test_after_fit and not self.trainer.interrupted:
            best = checkpoint.best_model_path or None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
        if self.trainer.is_global_zero:
            print(f"logs: {log_dir}", flush=True)
            print(f"checkpoints: {checkpoint.dirpath} ({saved})", flush=True)


COMMANDS = {
    "sweep": "wave_lightning.sweep.cli",
    "analyze": "wave_lightning.analysis.cli",
}


def main(args: list[str] | None = None) -> None:
    """Entry point of `wave-lightning`: LightningCLI subcommands, plus `sweep` and `analyze`."""
    argv = sys.argv[1:] if args is None else list(args)
    quiet_known_noise()
    if argv and argv[0] in COMMANDS:
        importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
        return
    try:
        WaveCLI(args=args)
    finally:
        release_process_group()


def release_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits: Lightning leaves it, and gloo's
    worker threads then sometimes abort the process at exit ("terminate called without an active
    exception", seen in tests/test_distributed.py), failing a finished run."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
