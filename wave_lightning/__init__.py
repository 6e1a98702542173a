"""wave_lightning: research on wave-based recurrent networks with Lightning and Optuna."""

__version__ = "0.1.0"
