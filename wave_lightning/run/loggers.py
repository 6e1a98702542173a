"""The run directory's loggers: CSV that survives a resume, then TensorBoard when installed or
the trackers a config names (wave_lightning.run.trackers)."""

import csv
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from .trackers import place_trackers


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing metrics.csv is continued, never replaced.

    Lightning's writer starts with no known columns and rewrites the file with only the new
    run's columns, which drops the rows of the run a resume continues.
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def _check_log_dir_exists(self) -> None:
        """Nothing is deleted, so there is nothing to warn about."""


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv keeps the history of a resumed run."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def default_loggers(root: str) -> list[Logger]:
    """CSV logs in the run directory, and TensorBoard beside them when it is installed."""
    loggers: list[Logger] = [AppendingCSVLogger(root, name="", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(root, name="tensorboard", version=""))
    except ModuleNotFoundError:
        pass
    return loggers


def configured_loggers(root: str, configured: Logger | list[Logger], resume: bool) -> list[Logger]:
    """CSV logs in the run directory (sweeps and reports read them), then the configured loggers
    with their trackers placed there; `resume`: continue the tracker runs recorded there."""
    others = [configured] if isinstance(configured, Logger) else list(configured)
    return [
        AppendingCSVLogger(root, name="", version=""),
        *place_trackers(Path(root), others, resume),
    ]
