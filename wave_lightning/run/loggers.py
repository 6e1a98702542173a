"""The run directory's loggers: CSV that survives a resume, and TensorBoard when installed."""

import csv
import os

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
