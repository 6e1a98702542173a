"""The callback a trial's training run carries: it reports the metric to its Optuna trial."""

import json
from pathlib import Path

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer

from .spec import load_sweep
from .storage import load_study, open_storage

PRUNED_FILE = "pruned.json"


class TrialReporter(Callback):
    """Reports the sweep's metric after every validation; stops the run when the pruner says so.

    The run is a separate process; it reaches its trial through the sweep's storage. A pruned
    run writes pruned.json in its directory and raises optuna.TrialPruned.
    """

    def __init__(self, sweep: str, trial_number: int) -> None:
        self.sweep_file, self.trial_number = sweep, trial_number
        self.trial: optuna.Trial | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        sweep = load_sweep(self.sweep_file)
        self.metric = sweep.metric
        study = load_study(sweep, open_storage(sweep))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.trial_number
        )
        self.trial = optuna.Trial(study, trial_id)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or self.trial is None:
            return
        self.trial.report(float(value), step=trainer.global_step)
        if self.trial.should_prune():
            message = f"pruned at step {trainer.global_step} with {self.metric}={float(value):.6g}"
            (Path(trainer.default_root_dir) / PRUNED_FILE).write_text(
                json.dumps({"step": trainer.global_step, "value": float(value)})
            )
            raise optuna.TrialPruned(message)
