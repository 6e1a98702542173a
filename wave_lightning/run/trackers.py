"""Experiment trackers beside metrics.csv: TensorBoard, W&B (offline by default) and MLflow (a
local SQLite store by default), placed in the run folder and grouped by study in a sweep.

Lightning's loggers take their location when they are built, but the run folder is decided
after the config's classes are (it is never written into the saved config), and building
MLflow's client opens its store. So a tracker keeps its options, is placed in the run folder
with the trainer, and builds the Lightning logger it extends when the trainer starts (after the
folder checks; `check_args` writes nothing). Its run's id is kept in the run folder's
trackers.json, so that `--ckpt_path last` continues the same tracker run. `TrackerRuns` records
how the run ended as the tracker's "state": COMPLETE when fit reached its end, PRUNED when the
sweep's pruner stopped it, PREEMPTED when a signal or Ctrl-C stopped it with a checkpoint to
resume, FAIL on any other error. A run killed outright records nothing (MLflow shows RUNNING).
"""

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .trial import TrialIdentity, current_trial

RECORD_FILE = "trackers.json"
MLFLOW_STORE = "mlflow.db"
PROJECT = "wave-lightning"  # the W&B project and MLflow experiment outside a sweep
RUNNING, COMPLETE, FAIL, PRUNED, PREEMPTED = "RUNNING", "COMPLETE", "FAIL", "PRUNED", "PREEMPTED"


def recorded(run: Path, tracker: str) -> dict[str, Any]:
    """What trackers.json in `run` says of `tracker`'s run (empty when nothing)."""
    path = run / RECORD_FILE
    return json.loads(path.read_text()).get(tracker, {}) if path.is_file() else {}


def record(run: Path, tracker: str, entry: dict[str, Any]) -> None:
    """Keep `tracker`'s run in trackers.json, for a resume to continue it."""
    path = run / RECORD_FILE
    records = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**records, tracker: entry}, indent=1) + "\n")


def trial_name(trial: TrialIdentity) -> str:
    """trial-NNNN: the run name of a sweep trial, as its folder is named."""
    return f"trial-{trial.number:04d}"


class Tracker:
    """What every tracker adds to its Lightning logger: a place, a start and an end state."""

    def place(self, run: Path, resume: bool) -> None:
        """Go in the run folder `run`; `resume`: go on with the tracker run recorded there."""
        self.run, self.resume = run, resume

    def build(self) -> None:
        """Build the Lightning logger (every rank, when the trainer starts)."""
        raise NotImplementedError

    def open(self) -> None:
        """Open the tracker run and record its id in the run folder (rank zero)."""

    def record_state(self, state: str) -> None:
        """Record how the run ended (rank zero)."""


class TensorBoardTracker(Tracker, TensorBoardLogger):
    """TensorBoard event files in the run folder's tensorboard/."""

    def __init__(self) -> None:
        """Built by `build`."""

    def build(self) -> None:
        TensorBoardLogger.__init__(self, str(self.run), name="tensorboard", version="")


class WandbTracker(Tracker, WandbLogger):
    """Weights & Biases, offline by default, with its files in the run folder's wandb/ (upload
    them later with `wandb sync RUN/wandb/offline-run-*`). In a sweep the run is named trial-NNNN
    in the study's group, with the trial's number and parameters in its config."""

    def __init__(
        self,
        project: str | None = None,
        offline: bool = True,
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """project: default $WANDB_PROJECT or wave-lightning; name: default the run folder's
        name (trial-NNNN in a sweep); group: default the sweep's study."""
        self.options = {"project": project or os.environ.get("WANDB_PROJECT") or PROJECT}
        self.options |= {"offline": offline, "entity": entity, "tags": tags}
        self.name_option, self.group_option = name, group

    def build(self) -> None:
        trial = current_trial()
        previous = recorded(self.run, "wandb").get("id") if self.resume else None
        WandbLogger.__init__(
            self,
            name=self.name_option or (trial_name(trial) if trial else self.run.name),
            group=self.group_option or (trial.study if trial else None),
            save_dir=str(self.run),
            id=previous,
            config={"trial": asdict(trial)} if trial else None,
            **self.options,
        )

    def open(self) -> None:
        record(self.run, "wandb", {"id": self.experiment.id})

    def record_state(self, state: str) -> None:
        self.experiment.summary["state"] = state


class MLflowTracker(Tracker, MLFlowLogger):
    """MLflow, to a SQLite store in the run folder by default (in a sweep: beside the trial
    folders, shared by the study), or to tracking_uri or $MLFLOW_TRACKING_URI (a server URL, or
    sqlite:///PATH). In a sweep the experiment is the study and the run trial-NNNN, with the
    trial's parameters as params trial/NAME and tags study, trial and state."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """experiment_name: default the sweep's study, else wave-lightning; run_name: default
        the run folder's name (trial-NNNN in a sweep)."""
        self.uri_option = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.experiment_option, self.run_name_option = experiment_name, run_name
        self.tag_options = tags or {}
        self.state: str | None = None

    def build(self) -> None:
        trial, run = current_trial(), self.run
        store = run.parent if trial else run  # a study's trials share one store
        uri = self.uri_option or f"sqlite:///{store.resolve() / MLFLOW_STORE}"
        previous = recorded(run, "mlflow") if self.resume else {}
        tags = {"run_folder": str(run.resolve()), **self.tag_options}
        if trial:
            tags |= {"study": trial.study, "trial": str(trial.number)}
        MLFlowLogger.__init__(
            self,
            experiment_name=self.experiment_option or (trial.study if trial else PROJECT),
            run_name=self.run_name_option or (trial_name(trial) if trial else run.name),
            tracking_uri=uri,
            tags=tags,
            run_id=previous.get("run_id") if previous.get("tracking_uri") == uri else None,
        )
        self.trial = trial

    def open(self) -> None:
        if self._run_id is not None:  # a resume: the recorded run goes on
            self.experiment.update_run(self.run_id, status="RUNNING")
        record(self.run, "mlflow", {"tracking_uri": self._tracking_uri, "run_id": self.run_id})
        if self.trial:
            self.log_hyperparams({"trial": self.trial.params})

    def record_state(self, state: str) -> None:
        self.state = state
        self.experiment.set_tag(self.run_id, "state", state)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's finalize; a pruned or preempted run ends KILLED, not FAILED."""
        super().finalize("KILLED" if self.state in (PRUNED, PREEMPTED) else status)


def place_trackers(run: Path, loggers: list[Logger], resume: bool) -> list[Logger]:
    """`loggers` with every tracker among them placed in the run folder `run`."""
    for logger in loggers:
        if isinstance(logger, Tracker):
            logger.place(run, resume)
    return loggers


def end_state(exception: BaseException) -> str:
    """The tracker state of a run that `exception` stopped."""
    if isinstance(exception, optuna.TrialPruned):
        return PRUNED
    if isinstance(exception, SIGTERMException | KeyboardInterrupt):
        return PREEMPTED
    return FAIL


class TrackerRuns(Callback):
    """Starts the trackers' runs when the trainer first starts and records how the run ended."""

    def __init__(self) -> None:
        self.started = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.started:  # the test after fit goes on in the same tracker runs
            return
        self.started = True
        for tracker in trackers(trainer):
            tracker.build()
        if trainer.is_global_zero:
            Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
            for tracker in trackers(trainer):
                tracker.open()
        record_state(trainer, RUNNING)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record_state(trainer, COMPLETE)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        record_state(trainer, end_state(exception))


def trackers(trainer: Trainer) -> list[Tracker]:
    """The trainer's trackers."""
    return [logger for logger in trainer.loggers if isinstance(logger, Tracker)]


def record_state(trainer: Trainer, state: str) -> None:
    """Every tracker of the trainer records `state` (rank zero)."""
    if trainer.is_global_zero:
        for tracker in trackers(trainer):
            tracker.record_state(state)
