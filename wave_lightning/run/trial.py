"""Which sweep trial a run is: its worker says so through the environment, and trackers group
the run by it (study, trial number, parameters)."""

import json
import os
from dataclasses import dataclass
from typing import Any

STUDY_ENV = "WAVE_LIGHTNING_STUDY"
TRIAL_ENV = "WAVE_LIGHTNING_TRIAL"
PARAMS_ENV = "WAVE_LIGHTNING_TRIAL_PARAMS"


@dataclass(frozen=True)
class TrialIdentity:
    """A sweep trial as its run sees it."""

    study: str
    number: int
    params: dict[str, Any]


def trial_environment(study: str, number: int, params: dict[str, Any]) -> dict[str, str]:
    """The environment variables that tell a trial's run which trial it is."""
    text = json.dumps(params, sort_keys=True, default=str)
    return {STUDY_ENV: study, TRIAL_ENV: str(number), PARAMS_ENV: text}


def current_trial() -> TrialIdentity | None:
    """The sweep trial this process runs, None outside a sweep."""
    if STUDY_ENV not in os.environ or TRIAL_ENV not in os.environ:
        return None
    params = json.loads(os.environ.get(PARAMS_ENV) or "{}")
    return TrialIdentity(os.environ[STUDY_ENV], int(os.environ[TRIAL_ENV]), params)
