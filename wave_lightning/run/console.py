"""What a run prints: per-epoch lines when the output is not a terminal (the known noise it
no longer prints: run.noise)."""

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only


def format_metrics(metrics: dict) -> str:
    """'name=value' pairs, sorted, 4 significant digits."""
    return " ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))


class EpochLines(Callback):
    """Prints one line per epoch with the logged metrics when the progress bar is off.

    A run resumed from a checkpoint written at an epoch's end runs that epoch's end hooks again
    with no metrics (Lightning does not save them): that epoch's line was printed before."""

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.progress_bar_callback is None and not trainer.sanity_checking and metrics:
            line = f"epoch {trainer.current_epoch} step {trainer.global_step}: "
            print(line + format_metrics(metrics), flush=True)
