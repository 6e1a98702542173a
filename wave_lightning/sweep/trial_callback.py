"""The callback a trial's training run carries: it reports the metric to its Optuna trial and
measures the model's size and its training step's time."""

import json
import statistics
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

import optuna
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.trial import TrialState

from .claims import frozen
from .outage import StorageAway
from .spec import MEASURED, load_sweep
from .storage import load_study, open_storage

PRUNED_FILE = "pruned.json"
COMPLETED_FILE = "completed.json"
STOPPED_ATTR = "stopped_by"  # study user attribute: why no worker starts another trial
TIMED_STEPS = 1000  # step_seconds is the median of the last this many training steps
WARMUP_STEPS = 3  # not timed after each start: the C++ build, first allocations


class MetricNotLogged(RuntimeError):
    """A validation ended without the sweep's metric: a typo in the sweep file, for every trial."""


class TrialTakenOver(RuntimeError):
    """The trial is no longer RUNNING: it was failed and retried while this run was silent."""


class TrialReporter(Callback):
    """Reports the sweep's metric after every validation; stops the run when the pruner says so.

    A multi-objective sweep reports nothing (Optuna cannot prune it): its worker reads the
    objectives from metrics.csv. Every run measures its trainable parameters and the median
    wall time of its last training steps (forward, backward, optimizer step; data loading and
    validation left out), which completed.json records as `params` and `step_seconds`.

    The run is a separate process; it reaches its trial through the sweep's storage. A pruned
    run writes pruned.json in its directory and raises optuna.TrialPruned; a fit that reached
    its end writes completed.json, which is what makes the trial COMPLETE. A run whose trial
    another attempt took over stops at its next step, before it writes more into the folder.
    While the storage is away the run keeps training: its reports wait (in its checkpoints too)
    and are sent when the storage is back, at the latest when the fit ends.
    """

    def __init__(self, sweep: str, trial_number: int) -> None:
        self.sweep_file, self.trial_number = sweep, trial_number
        self.trial: optuna.Trial | None = None
        self.checked = 0.0
        self.pending: list[tuple[int, float]] = []  # (step, value) not yet reported
        self.step_times: deque[float] = deque(maxlen=TIMED_STEPS)
        self.started, self.steps_since_start = 0.0, 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        sweep = load_sweep(self.sweep_file)
        self.metric, self.check_every = sweep.metric, sweep.heartbeat["interval"]
        self.reports = not sweep.is_multi
        self.logged = [o.name for o in sweep.objectives if not o.measured]
        self.logged += [c.name for c in sweep.constraints if c.name not in MEASURED]
        study = load_study(sweep, open_storage(sweep))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.trial_number
        )
        self.trial = optuna.Trial(study, trial_id)
        self.outage = study._storage.outage

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
            with suppress(StorageAway), self.outage.without_waiting():
                self.check_owned()
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        """Time the step just done (on a GPU, once its kernels have finished)."""
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.steps_since_start += 1
        if self.steps_since_start > WARMUP_STEPS:
            self.step_times.append(time.perf_counter() - self.started)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        missing = [name for name in self.logged if name not in trainer.callback_metrics]
        if missing:
            self.stop_sweep(trainer, missing[0])
        if not self.reports:
            return
        value = trainer.callback_metrics[self.metric]
        self.pending.append((trainer.global_step, float(value)))
        with suppress(StorageAway), self.outage.without_waiting():
            self.check_owned()
            self.send_reports()
            if self.trial.should_prune():
                self.prune(trainer, float(value))

    def send_reports(self) -> None:
        """Report every value not yet reported, oldest first."""
        while self.pending:
            step, value = self.pending[0]
            self.trial.report(value, step=step)
            self.pending.pop(0)

    def prune(self, trainer: Trainer, value: float) -> None:
        """Stop the run as the pruner asked, with pruned.json saying where."""
        message = f"pruned at step {trainer.global_step} with {self.metric}={value:.6g}"
        write_json(trainer, PRUNED_FILE, {"step": trainer.global_step, "value": value})
        raise optuna.TrialPruned(message)

    def stop_sweep(self, trainer: Trainer, metric: str) -> None:
        """A metric is missing: stop the whole sweep (every trial would miss it) and this run."""
        logged = ", ".join(sorted(k for k in trainer.callback_metrics if "/" in k)) or "nothing"
        message = (
            f"the sweep's metric {metric!r} was not logged by validation at step "
            f"{trainer.global_step}; it logged {logged}"
        )
        self.trial.study.set_user_attr(STOPPED_ATTR, f"trial {self.trial_number}: {message}")
        raise MetricNotLogged(message)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit reached its end (max_steps, max_epochs or an early stop), not a signal or error."""
        if self.trial is not None:
            self.send_reports()  # waits for a storage that is away, up to the outage limit
            record = {"step": trainer.global_step, **measurements(pl_module, self.step_times)}
            write_json(trainer, COMPLETED_FILE, record)

    def state_dict(self) -> dict[str, Any]:
        """The reports not sent yet, so that a run resumed from this checkpoint sends them, and
        the step times so far."""
        return {"pending": list(self.pending), "step_times": list(self.step_times)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = [tuple(item) for item in state_dict.get("pending", [])]
        self.step_times.extend(state_dict.get("step_times", []))


def measurements(pl_module: LightningModule, step_times: deque[float]) -> dict[str, Any]:
    """What every trial measures: trainable parameters and the median step time (None when
    no step was timed)."""
    params = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
    seconds = statistics.median(step_times) if step_times else None
    return {"params": params, "step_seconds": seconds}


def write_json(trainer: Trainer, name: str, data: dict) -> None:
    """A small record in the run directory."""
    (Path(trainer.default_root_dir) / name).write_text(json.dumps(data))
