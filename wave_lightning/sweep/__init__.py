"""Optuna sweeps: sweep files, trials as LightningCLI runs, workers, storages and reports."""

from .spec import Sweep, SweepFileError, load_sweep

__all__ = ["Sweep", "SweepFileError", "load_sweep"]
