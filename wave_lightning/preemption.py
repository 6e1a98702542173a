"""Preemption: SIGTERM or SIGUSR1 stops a run after the current step with a checkpoint to resume.

Lightning turns SIGTERM into a stop after the current training step (SIGTERMException, on every
rank of a distributed run); this callback writes the checkpoint then, at a step boundary, so a
resumed run continues exactly. Outside SLURM, SIGUSR1 means the same as SIGTERM. Under SLURM,
Lightning's own SIGUSR1 handler stays in charge (it writes hpc_ckpt_N.ckpt and requeues the job
with `scontrol requeue`); the SIGTERM that SLURM then sends ends the run here, with this
checkpoint. `--ckpt_path last` picks the newest of this checkpoint and last.ckpt.
"""

import os
import signal
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

STOP_SIGNALS = (SIGTERMException, KeyboardInterrupt)


class PreemptionCheckpoint(OnExceptionCheckpoint):
    """Saves `dirpath/filename.ckpt` when fitting is stopped by a signal or Ctrl-C (not on other
    errors, such as a non-finite loss, whose state is not worth resuming); deleted when a later
    fit in the same directory ends normally."""

    def __init__(self, dirpath: str, filename: str = "preempted") -> None:
        super().__init__(dirpath, filename)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGUSR1, stop_like_sigterm)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING and isinstance(exception, STOP_SIGNALS):
            super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:  # a test or validation must not delete what fit resumes
            super().teardown(trainer, pl_module, stage)


def stop_like_sigterm(signum: int, frame: Any) -> None:
    """SIGUSR1 handler where nobody else handles it: ask Lightning to stop, as SIGTERM does."""
    os.kill(os.getpid(), signal.SIGTERM)
