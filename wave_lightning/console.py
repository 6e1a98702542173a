"""Plain per-epoch lines for runs whose output is not a terminal (batch jobs, CI, log files)."""

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only


def format_metrics(metrics: dict) -> str:
    """'name=value' pairs, sorted, 4 significant digits."""
    return " ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))


class EpochLines(Callback):
    """Prints one line per epoch with the logged metrics when the progress bar is off."""

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.progress_bar_callback is None and not trainer.sanity_checking:
            metrics = format_metrics(trainer.callback_metrics)
            print(
                f"epoch {trainer.current_epoch} step {trainer.global_step}: {metrics}", flush=True
            )
