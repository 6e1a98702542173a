"""Optuna samplers and pruners from the {name: ..., **options} mappings of a sweep file."""

import inspect
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

SAMPLER_CLASSES = {
    "grid": optuna.samplers.GridSampler,
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNER_CLASSES = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}
FIXED = {"grid": {"search_space"}}  # options the sweep file does not set itself
DEPRECATED = {"constraints_func"}  # the sweep file's `constraints` set them on each trial


def options_of(kind: str, name: str) -> set[str]:
    """The keyword arguments of the Optuna class a sweep file may set."""
    cls = (SAMPLER_CLASSES if kind == "sampler" else PRUNER_CLASSES)[name]
    return set(inspect.signature(cls).parameters) - FIXED.get(name, set()) - DEPRECATED


def check_options(kind: str, spec: dict[str, Any], error: Callable[[str, str], Exception]) -> None:
    """Raise error(key, message) for an option the named sampler or pruner does not take."""
    allowed = options_of(kind, spec["name"])
    for key in spec:
        if key != "name" and key not in allowed:
            raise error(key, f"{spec['name']} takes no option {key!r}; it takes {sorted(allowed)}")


def make_sampler(spec: dict[str, Any], space: dict[str, BaseDistribution]) -> Any:
    """The Optuna sampler; a grid sampler gets the choices of every factor."""
    options = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "grid":
        options["search_space"] = {name: list(d.choices) for name, d in space.items()}
    return SAMPLER_CLASSES[spec["name"]](**options)


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The Optuna pruner named by the sweep file."""
    return PRUNER_CLASSES[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})
