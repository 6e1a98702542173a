"""The known noise every run printed without telling the user anything, silenced. Standard
library only: every subcommand calls it first, and `sweep --help` must not wait for Lightning."""

import logging
import warnings

# Lightning's advertisements for its cloud services ("💡 Tip: ... litlogger / litmodels"), logged
# by rank_zero_info through the logger that Lightning's rank_zero modules install on import
TIP_PREFIX = "💡 Tip:"
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


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
    for name in RANK_ZERO_LOGGERS:
        log = logging.getLogger(name)
        if drop_tips not in log.filters:
            log.addFilter(drop_tips)
