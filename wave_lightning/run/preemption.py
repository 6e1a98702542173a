"""Preemption: SIGTERM or SIGUSR1 stop a run at the next step boundary with a checkpoint to resume.

The signal handlers only record the signal: collective work inside a signal handler deadlocks
DDP (one rank checkpointing from its handler in the middle of its backward while another waits
in the gradient all-reduce), which is what Lightning's own handlers do (its SIGTERM broadcast,
its SLURM hpc checkpoint). After every optimizer step the ranks agree on what they recorded (an
all-reduce of one number), so all of them stop after the same step: together they write
checkpoints/preempted.ckpt of that step, rank 0 requeues the SLURM job when the signal was
SLURM's time-limit signal (SIGUSR1 with `#SBATCH --signal=SIGUSR1@90`), and the run exits with
PREEMPTED_EXIT. Outside SLURM, SIGUSR1 means the same as SIGTERM. SIGTERM never requeues: a
preempted job with --requeue is requeued by SLURM, and `scancel` means stop.

`--ckpt_path last` resumes from the newest readable checkpoint
(wave_lightning.run.folder.RunFolder.newest_checkpoint); the resumed run logs the same steps as
an uninterrupted one.
"""

import signal
import subprocess
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .signals import REQUEUE, Signals, slurm_job_id

PREEMPTED = "preempted.ckpt"
PREEMPTED_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


def agreed(trainer: Trainer) -> int:
    """What every rank recorded, agreed at a step boundary: the largest of them (0: go on)."""
    if not (dist.is_available() and dist.is_initialized() and trainer.world_size > 1):
        return Signals.recorded
    flag = torch.tensor([Signals.recorded], device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def requeue(job: str) -> None:
    """Ask SLURM to queue this job again; it then stops the job, which exits on its own first."""
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode == 0:
        rank_zero_info(f"requeued SLURM job {job}")
    else:
        rank_zero_warn(f"scontrol requeue {job} failed: {result.stderr.strip()}")


class PreemptionCheckpoint(Callback):
    """Stops fitting after the step in which a stop signal came, with `dirpath`/preempted.ckpt of
    that step; a Ctrl-C writes the same file. Deleted when a later fit in the same directory ends
    normally. Not written on other errors (a non-finite loss), whose state is not worth resuming.

    A plain Callback, not Lightning's OnExceptionCheckpoint: that one makes every `fit` without
    a ckpt_path resume from the last checkpoint, where this CLI starts fresh unless asked.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = str(Path(dirpath) / PREEMPTED)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        trainer._signal_connector = RecordingSignals(trainer)  # before Lightning registers its own

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        Signals.ended = False  # (set by a previous fit in this process)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if pl_module.automatic_optimization:
            # the step a row is logged at is the optimizer step count in an uninterrupted run;
            # Lightning 2.6 adds one to it when resuming from an epoch end's last.ckpt
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if not trainer.fit_loop.epoch_loop._should_accumulate():  # the optimizer has stepped
            trainer._signal_connector.agreed = agreed(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        Signals.ended = True

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        stop = getattr(trainer._signal_connector, "agreed", 0)  # 0 when setup never ran
        if isinstance(exception, SIGTERMException) and stop:
            trainer.save_checkpoint(self.path)  # every rank is here, after the same step
            job = slurm_job_id()
            if stop == REQUEUE and job is not None and trainer.is_global_zero:
                requeue(job)
        elif isinstance(exception, KeyboardInterrupt):
            # no barrier: Ctrl-C reaches the ranks at different points of a step
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            trainer.strategy.save_checkpoint(checkpoint, self.path)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:  # a test or validation must not delete what fit resumes
            trainer.strategy.remove_checkpoint(self.path)


class RecordingSignals(_SignalConnector):
    """Lightning's signal connector with Signals' handlers in place of its own, kept after the
    trainer is done (a late signal to a rank that is already stopping is only recorded).

    Lightning's loops stop after the current step, at the point they always stopped on SIGTERM,
    when `received_sigterm` is true: here, once the ranks agreed to stop, except while validating
    (a validation due at that step is finished, never cut short).
    """

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.agreed = 0  # what the ranks agreed after the last step: 0 (go on), STOP or REQUEUE

    @property
    def received_sigterm(self) -> bool:
        return bool(self.agreed) and not self.trainer.validating

    @received_sigterm.setter
    def received_sigterm(self, value: bool) -> None:
        """Lightning's own writes change nothing: its handlers are never installed."""

    def register_signal_handlers(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:  # a test or validation keeps the defaults
            Signals.install()

    def teardown(self) -> None:
        pass
