"""`wave-lightning fit` (and validate, test, predict): the LightningCLI over the layers, tasks
and data of this package, with the run-folder and checkpoint policy of wave_lightning.run."""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from .data.batching import per_device_batch_size
from .run.checkpoints import CheckpointError, load_checkpoint
from .run.configcheck import (
    LINKS,
    ConfigError,
    parser_reason,
    refused_arguments,
    refused_value,
    set_by_user,
)
from .run.console import EpochLines
from .run.devices import check_devices
from .run.folder import RunFolder
from .run.loggers import configured_loggers, default_loggers
from .run.preemption import PREEMPTED_EXIT, PreemptionCheckpoint
from .run.trackers import TrackerRuns
from .tasks import SequenceTask


def class_name(config, key: str) -> str:
    """The class name in a class_path config value, or `key` when there is none."""
    path = getattr(config, "class_path", None) if config is not None else None
    return path.rsplit(".", 1)[-1] if path else key


DESCRIPTION = "Train and evaluate wave-based RNNs (LightningCLI subcommands below)."


@rank_zero_only
def say(line: str) -> None:
    """A line of the run's output, from rank zero only."""
    print(line, flush=True)


def option_names(parser: LightningArgumentParser) -> list[str]:
    """Every option string of `parser` and of its subcommands' parsers."""
    subcommands = getattr(parser, "_subcommands_action", None)
    parsers = [parser, *(subcommands.choices.values() if subcommands else [])]
    return [name for each in parsers for name in each._option_string_actions]


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
        kwargs.setdefault("trainer_defaults", {"callbacks": [EpochLines()]})
        kwargs.setdefault("parser_kwargs", {"prog": "wave-lightning", "description": DESCRIPTION})
        kwargs["parser_kwargs"].setdefault("exit_on_error", False)  # one line: parse_arguments
        super().__init__(
            SequenceTask,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse (a refused argument is one ConfigError line naming the closest valid option);
        refuse values of linked keys and a damaged `--ckpt_path FILE`."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            text = str(error)
            reason = refused_arguments(text, option_names(parser)) or parser_reason(text)
            raise ConfigError(reason) from error
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        for source, target in LINKS.items():
            if set_by_user(config, target):
                raise ConfigError(
                    f"{target} is set from {source} (the data decides it); "
                    f"remove {target} from the command line or config"
                )
        ckpt_path = config.get("ckpt_path")
        if ckpt_path not in (None, "last", "best", "hpc", "registry"):
            load_checkpoint(ckpt_path)

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
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="CPU threads of torch (torch.set_num_threads); default: torch's own count, "
            "which the saved config.yaml then records",
        )
        for source, target in LINKS.items():
            parser.link_arguments(source, target, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        try:
            check_devices(config.trainer.accelerator, config.trainer.devices)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if config.threads is None:
            config.threads = torch.get_num_threads()  # recorded: the count changes the numbers
        if config.threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {config.threads}")
        torch.set_num_threads(config.threads)

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a bad value the classes refuse is one ConfigError."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            raise ConfigError(refused_value(error)) from error

    def run_dir(self) -> str:
        """trainer.default_root_dir, or runs/<Data>-<Layer> when the config gives none."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.default_root_dir is not None:
            return config.trainer.default_root_dir
        data = class_name(config.data, "data")
        layer = class_name(config.model.init_args.get("layer"), "layer")
        return str(RunFolder.default(data, layer).path)

    def run_folder(self) -> RunFolder:
        """The folder of this run, with the checkpoint folder its config decided."""
        checkpoints = self._get(self.config_init, "checkpoint").dirpath
        return RunFolder(self.trainer.default_root_dir, checkpoints)

    def instantiate_trainer(self, **kwargs):
        """The trainer, with the derived run folder, loggers and checkpoints decided here."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        root = kwargs.setdefault("default_root_dir", self.run_dir())
        logger = trainer_config.get("logger")
        if logger in (None, True):
            kwargs["logger"] = default_loggers(root)
        elif logger is not False:  # a resumed fit continues its tracker runs
            resume = self.subcommand == "fit" and self.config_init.fit.ckpt_path is not None
            kwargs["logger"] = configured_loggers(root, logger, resume)
        if trainer_config.get("enable_progress_bar") is None:
            kwargs["enable_progress_bar"] = sys.stderr.isatty()  # not saved: the terminal's
        checkpoint = self._get(self.config_init, "checkpoint")
        if checkpoint.dirpath is None:
            checkpoint.dirpath = os.path.realpath(RunFolder(root).checkpoints)
        trainer = super().instantiate_trainer(**kwargs)
        self.last_checkpoint = last_checkpoint(checkpoint.dirpath)
        # after the monitored ModelCheckpoint, which stays trainer.checkpoint_callback (the best)
        trainer.callbacks += [self.last_checkpoint, PreemptionCheckpoint(checkpoint.dirpath)]
        trainer.callbacks.append(TrackerRuns())
        return trainer

    def check_batch_split(self) -> None:
        """Fail before any process starts when the global batch does not split over them."""
        batch_size = getattr(self.datamodule, "batch_size", None)
        if isinstance(batch_size, int):
            per_device_batch_size(batch_size, self.trainer)

    def before_evaluation(self) -> None:
        """Check the batch split and the data files; load any checkpoint weights-only."""
        self.check_batch_split()
        if not getattr(self.datamodule, "download", False):  # else prepare_data fetches them
            getattr(self.datamodule, "require_data", lambda: None)()
        self.config_init[self.subcommand].weights_only = True

    before_validate = before_test = before_predict = before_evaluation

    def before_fit(self) -> None:
        """Check the batch split; resolve `--ckpt_path last` (see RunFolder.newest_checkpoint)."""
        self.before_evaluation()
        config = self.config_init.fit
        if config.ckpt_path == "last":
            config.ckpt_path = self.resume_checkpoint()
            self.say_if_finished(config.ckpt_path)
        elif config.ckpt_path is None and not self.trainer.fast_dev_run:
            self.run_folder().check_fresh()

    def resume_checkpoint(self) -> str:
        """The newest readable checkpoint of this run; an error when there is none."""
        folder = self.run_folder()
        newest = folder.newest_checkpoint()
        if newest is None:
            raise CheckpointError(
                f"--ckpt_path last: no readable checkpoint to resume in {folder.checkpoints} "
                "(leave out --ckpt_path to start a new run)"
            )
        return newest

    def say_if_finished(self, ckpt_path: str) -> None:
        """Say so when `--ckpt_path last` resumes a run that already reached max_steps: nothing
        is trained, and only the test runs again."""
        step, max_steps = load_checkpoint(ckpt_path)["global_step"], self.trainer.max_steps
        if 0 < max_steps <= step:
            tests = self.config.fit.test_after_fit
            tested = ", its best checkpoint is tested again" if tests else ""
            say(
                f"{self.trainer.default_root_dir} already finished: {Path(ckpt_path).name} is at "
                f"step {step} of max_steps {max_steps}; nothing is trained{tested}"
            )

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        # read before testing: loading the best checkpoint restores the callback's older state
        saved = f"last: {self.last_checkpoint.best_model_path}, best: {checkpoint.best_model_path}"
        if self.config.fit.test_after_fit and not self.trainer.interrupted:
            best = checkpoint.best_model_path or None
            self.trainer.test(
                self.model, datamodule=self.datamodule, ckpt_path=best, weights_only=True
            )
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
        if self.trainer.is_global_zero:
            print(f"logs: {log_dir}", flush=True)
            print(f"checkpoints: {checkpoint.dirpath} ({saved})", flush=True)


CHECK_PARSER = {"prog": "wave-lightning fit", "exit_on_error": False}


def check_args(args: list[str], cli: WaveCLI | None = None) -> WaveCLI:
    """Parse `wave-lightning fit ARGS` and build their model, data, callbacks and trainer as a
    run would (so the layers check their names and shapes), without fitting or writing anything.

    Raises what is refused (jsonargparse's ArgumentError, a class's ValueError, TypeError or
    ImportError). Returns the CLI that checked them: pass it back as `cli` to check more
    arguments with the same parser, which takes about a second to build.
    """
    if cli is None:
        return WaveCLI(args=args, run=False, parser_kwargs=CHECK_PARSER)
    cli.parse_arguments(cli.parser, args)
    cli.before_instantiate_classes()
    cli.instantiate_classes()
    return cli


def main(args: list[str] | None) -> None:
    """`wave-lightning fit|validate|test|predict ARGS` (None: the command line's); a stopped run
    exits with PREEMPTED_EXIT."""
    try:
        WaveCLI(args=args)
    except SIGTERMException:  # a SystemExit with status 0; the run did not reach its end
        sys.exit(PREEMPTED_EXIT)
    finally:
        release_process_group()


def release_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits: Lightning leaves it, and gloo's
    worker threads then sometimes abort the process at exit ("terminate called without an active
    exception", seen in tests/test_distributed.py), failing a finished run."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
