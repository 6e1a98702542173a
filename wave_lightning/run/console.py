"""What a run prints: per-epoch lines when the output is not a terminal, and no known noise."""

import logging
import warnings

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from lightning_utilities.core import rank_zero

# Lightning's advertisements for its cloud services ("💡 Tip: ... litlogger / litmodels").
TIP_PREFIX = "💡 Tip:"


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


def drop_tips(record: logging.LogRecord) -> bool:
    """A logging filter: False for Lightning's cloud-service tips."""
    return not str(record.msg).startswith(TIP_PREFIX)


def quiet_known_noise() -> None:
    """Silence what every run printed without telling the user anything about it.

    Lightning 2.6 builds torch's deprecated `LeafSpec` in its own `_pytree` module (torch 2.10+
    warns on each data loader it combines) and logs a litlogger/litmodels tip on every Trainer.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    if drop_tips not in rank_zero.log.filters:
        rank_zero.log.addFilter(drop_tips)
