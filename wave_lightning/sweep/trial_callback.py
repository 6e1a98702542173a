"""The callback a trial's training run carries: it reports the metric to its Optuna trial."""

import json
import time
from pathlib import Path

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.trial import TrialState

from .claims import frozen
from .spec import load_sweep
from .storage import load_study, open_storage

PRUNED_FILE = "pruned.json"
COMPLETED_FILE = "completed.json"
STOPPED_ATTR = "stopped_by"  # study user attribute: why no worker starts another trial


class MetricNotLogged(RuntimeError):
    """A validation ended without the sweep's metric: a typo in the sweep file, for every trial."""


class TrialTakenOver(RuntimeError):
    """The trial is no longer RUNNING: it was failed and retried while this run was silent."""


class TrialReporter(Callback):
    """Reports the sweep's metric after every validation; stops the run when the pruner says so.

    The run is a separate process; it reaches its trial through the sweep's storage. A pruned
    run writes pruned.json in its directory and raises optuna.TrialPruned; a fit that reached
    its end writes completed.json, which is what makes the trial COMPLETE. A run whose trial
    another attempt took over stops at its next step, before it writes more into the folder.
    """

    def __init__(self, sweep: str, trial_number: int) -> None:
        self.sweep_file, self.trial_number = sweep, trial_number
        self.trial: optuna.Trial | None = None
        self.checked = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        sweep = load_sweep(self.sweep_file)
        self.metric, self.check_every = sweep.metric, sweep.heartbeat["interval"]
        study = load_study(sweep, open_storage(sweep))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.trial_number
        )
        self.trial = optuna.Trial(study, trial_id)

    def check_owned(self) -> None:
        """Raise TrialTakenOver when the storage no longer has this trial RUNNING."""
        self.checked = time.monotonic()
        state = frozen(self.trial).state
        if state != TrialState.RUNNING:
            raise TrialTakenOver(
                f"trial {self.trial_number} is {state.name}: another attempt owns its run folder"
            )

    def on_train_batch_start(self, trainer: Trainer, *args) -> None:
        if self.trial is not None and time.monotonic() - self.checked >= self.check_every:
            self.check_owned()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            self.stop_sweep(trainer)
        self.check_owned()
        self.trial.report(float(value), step=trainer.global_step)
        if self.trial.should_prune():
            message = f"pruned at step {trainer.global_step} with {self.metric}={float(value):.6g}"
            write_json(trainer, PRUNED_FILE, {"step": trainer.global_step, "value": float(value)})
            raise optuna.TrialPruned(message)

    def stop_sweep(self, trainer: Trainer) -> None:
        """The metric is missing: stop the whole sweep (every trial would miss it) and this run."""
        logged = ", ".join(sorted(k for k in trainer.callback_metrics if "/" in k)) or "nothing"
        message = (
            f"the sweep's metric {self.metric!r} was not logged by validation at step "
            f"{trainer.global_step}; it logged {logged}"
        )
        self.trial.study.set_user_attr(STOPPED_ATTR, f"trial {self.trial_number}: {message}")
        raise MetricNotLogged(message)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit reached its end (max_steps, max_epochs or an early stop), not a signal or error."""
        if self.trial is not None:
            write_json(trainer, COMPLETED_FILE, {"step": trainer.global_step})


def write_json(trainer: Trainer, name: str, data: dict) -> None:
    """A small record in the run directory."""
    (Path(trainer.default_root_dir) / name).write_text(json.dumps(data))
