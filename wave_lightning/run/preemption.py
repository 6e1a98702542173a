"""Preemption: SIGTERM or SIGUSR1 stops a run after the current step with a checkpoint to resume.

Lightning turns SIGTERM into a stop after the current training step (SIGTERMException, on every
rank of a distributed run); PreemptionCheckpoint writes checkpoints/preempted.ckpt then, at a
step boundary, so a resumed run continues exactly. Outside SLURM, SIGUSR1 means the same as
SIGTERM. Under SLURM, Lightning's own SIGUSR1 handler stays in charge (it writes
hpc_ckpt_N.ckpt in the run directory and requeues the job with `scontrol requeue`); the SIGTERM
that SLURM then sends ends the run here, with preempted.ckpt. `--ckpt_path last` resumes from
the newest readable one (wave_lightning.run.folder.RunFolder.newest_checkpoint). A run stopped
so exits with PREEMPTED_EXIT, never 0: it did not reach its end.
"""

import os
import signal
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

STOP_SIGNALS = (SIGTERMException, KeyboardInterrupt)
PREEMPTED = "preempted.ckpt"
PREEMPTED_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class PreemptionCheckpoint(Callback):
    """Saves `dirpath`/preempted.ckpt when fitting is stopped by a signal or Ctrl-C (not on other
    errors, such as a non-finite loss, whose state is not worth resuming); deleted when a later
    fit in the same directory ends normally.

    A plain Callback, not Lightning's OnExceptionCheckpoint: that one makes every `fit` without
    a ckpt_path resume from the last checkpoint, where this CLI starts fresh unless asked.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = str(Path(dirpath) / PREEMPTED)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGUSR1, stop_like_sigterm)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING and isinstance(exception, STOP_SIGNALS):
            # not trainer.save_checkpoint: its closing barrier can deadlock against Lightning's
            # SIGTERM broadcasts when the ranks got the signal at different points of a step
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            trainer.strategy.save_checkpoint(checkpoint, self.path)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:  # a test or validation must not delete what fit resumes
            trainer.strategy.remove_checkpoint(self.path)


def stop_like_sigterm(signum: int, frame: Any) -> None:
    """SIGUSR1 handler where nobody else handles it: ask Lightning to stop, as SIGTERM does."""
    os.kill(os.getpid(), signal.SIGTERM)
