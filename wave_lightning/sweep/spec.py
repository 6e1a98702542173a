"""The sweep file: a YAML naming base configs, a search space, its objectives, a sampler and a
storage.

Every check runs when the file is loaded, before any trial, and names the bad key.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..run.errors import UserError
from .factory import check_options

KEYS = {
    "extends", "study", "configs", "args", "space", "seeds", "metric", "sampler", "pruner",
    "trials", "storage", "root", "max_retries", "heartbeat", "outage_limit", "reference",
    "constraints",
}  # fmt: skip
REQUIRED = ("study", "configs", "space", "metric")
FACTOR_KINDS = ("choices", "configs", "int", "float")
RANGE_OPTIONS = {"log", "step"}
FACTOR_OPTIONS = {"choices": set(), "configs": set(), "int": RANGE_OPTIONS, "float": RANGE_OPTIONS}
SAMPLERS = ("grid", "tpe", "random", "nsga2")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "threshold")
DIRECTIONS = ("minimize", "maximize")
MEASURED = ("params", "step_seconds")  # what every trial measures besides the logged metrics
BOUNDS = ("max", "min")
SEED_PARAM = "seed"
HEARTBEAT = {"interval": 30, "grace": 120}
OUTAGE_LIMIT_S = 600  # how long a worker waits for a storage that went away
DERIVED_FILE = "sweep.yaml"  # in the root of a sweep derived by command-line overrides


class SweepFileError(UserError, ValueError):
    """A sweep file that cannot run; the message names the file and the bad key."""


@dataclass(frozen=True)
class Factor:
    """One searched quantity: a dotted config key, or a choice among whole config files."""

    name: str
    distribution: BaseDistribution
    config_files: dict[str, Path] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return isinstance(self.distribution, CategoricalDistribution)

    def fit_args(self, value: Any) -> list[str]:
        """The `wave-lightning fit` arguments that set this factor to `value`."""
        if self.config_files:
            return ["--config", str(self.config_files[value])]
        text = value if isinstance(value, str) else json.dumps(value)
        return [f"--{self.name}={text}"]


@dataclass(frozen=True)
class Objective:
    """One optimised quantity: a metric validation logs, or one that every trial measures
    (`params`, the trainable parameter count; `step_seconds`, the median training step)."""

    name: str
    direction: str

    @property
    def measured(self) -> bool:
        return self.name in MEASURED


@dataclass(frozen=True)
class Constraint:
    """A bound on a logged or measured quantity; trials outside it are infeasible."""

    name: str
    bound: str  # max or min
    limit: float

    @property
    def key(self) -> str:
        return f"{self.name} {'<=' if self.bound == 'max' else '>='} {self.limit:g}"

    def violation(self, value: float) -> float:
        """Optuna's constraint value: <= 0 when `value` is within the bound."""
        return value - self.limit if self.bound == "max" else self.limit - value


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    path: Path
    study: str
    configs: list[Path]
    args: list[str]
    factors: list[Factor]
    seeds: list[int]
    objectives: tuple[Objective, ...]  # the first leads: pruning, ablation, history
    constraints: tuple[Constraint, ...]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    trials: int | None
    storage: str | None
    root: Path
    max_retries: int
    heartbeat: dict[str, int]
    outage_limit: int
    reference: dict[str, Any]  # the level each factor's others are compared with (report)
    fingerprint: str
    source: Path | None = None  # the sweep file given, when this one is derived by overrides

    @property
    def is_grid(self) -> bool:
        return self.sampler["name"] == "grid"

    @property
    def metric(self) -> str:
        """The leading objective: a logged metric, reported at every validation."""
        return self.objectives[0].name

    @property
    def direction(self) -> str:
        return self.objectives[0].direction

    @property
    def is_multi(self) -> bool:
        """Several objectives: Optuna's multi-objective study, a Pareto front, no pruning."""
        return len(self.objectives) > 1

    @property
    def space(self) -> dict[str, BaseDistribution]:
        """Every Optuna parameter of a trial, the seed last."""
        space = {f.name: f.distribution for f in self.factors}
        space[SEED_PARAM] = CategoricalDistribution(self.seeds)
        return space

    @property
    def journal(self) -> Path:
        """The default storage: a journal file beside the runs."""
        return self.root / "journal.log"


def file_error(path: Path, key: str, message: str) -> SweepFileError:
    """The error for `key` in the sweep file at `path`."""
    return SweepFileError(f"{path}: {key}: {message}")


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping in a YAML file, merged over the file named by its `extends` key."""
    if not path.is_file():
        raise SweepFileError(f"{path}: no such sweep file")
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise SweepFileError(f"{seen[0]}: extends: a cycle ({chain})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SweepFileError(f"{path}: not valid YAML: {where}{problem}") from error
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return {key: (path.parent, value) for key, value in data.items()}
    merged = read_yaml(path.parent / str(parent), (*seen, path.resolve()))
    merged.update({key: (path.parent, value) for key, value in data.items()})
    return merged


def derive(path: Path, located: dict[str, Any], overrides: list[str]) -> Path:
    """Apply command-line `fit` overrides to a sweep read from `path`: they follow its args,
    and the study and root get a suffix hashing them; the derived sweep file's path."""
    suffix = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:8]
    folder, args = located.get("args", (path.parent, []))
    if not isinstance(args, list):
        raise file_error(path, "args", "expected a list of `wave-lightning fit` arguments")
    located["args"] = (folder, [*args, *overrides])
    study = check_name(path, located.get("study", (path.parent, None))[1])
    located["study"] = (path.parent, f"{study}-{suffix}")
    root = located.get("root", (path.parent, None))[1]
    root = f"{root}-{suffix}" if root else str(Path("runs") / "sweeps" / f"{study}-{suffix}")
    located["root"] = (path.parent, root)
    return Path(root) / DERIVED_FILE


def write_derived(sweep: Sweep, original: Path) -> None:
    """The derived sweep file at sweep.path: the original file with the new study, root, args;
    what trials, workers and `status`/`report` read."""
    sweep.root.mkdir(parents=True, exist_ok=True)
    data = {"extends": str(original.resolve()), "study": sweep.study}
    data |= {"root": str(sweep.root), "args": sweep.args}
    sweep.path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read and check a sweep file, with `fit` overrides after its args (a derived sweep);
    raise SweepFileError naming the first bad key."""
    path = Path(path)
    located = read_yaml(path)
    sweep_path = derive(path, located, list(overrides)) if overrides else path
    unknown = sorted(set(located) - KEYS)
    if unknown:
        raise file_error(
            path, unknown[0], f"unknown key; allowed keys are {', '.join(sorted(KEYS))}"
        )
    for key in REQUIRED:
        if key not in located:
            raise file_error(path, key, "missing (required)")
    data = {key: value for key, (_, value) in located.items()}
    base = {key: folder for key, (folder, _) in located.items()}
    study = check_name(path, data["study"])
    sampler = check_named(path, "sampler", data.get("sampler", {"name": "grid"}), SAMPLERS)
    factors = check_space(path, data["space"], base["space"])
    seeds = check_seeds(path, data.get("seeds", [0]), sampler["name"])
    if sampler["name"] == "grid":
        for factor in factors:
            if not factor.is_grid:
                raise file_error(
                    path, f"space.{factor.name}", "sampler grid needs choices or configs"
                )
    objectives = check_objectives(path, data["metric"])
    pruner = check_named(path, "pruner", data.get("pruner", {"name": "none"}), PRUNERS)
    if len(objectives) > 1 and pruner["name"] != "none":
        raise file_error(
            path, "pruner", "several objectives cannot be pruned (Optuna's pruners take one)"
        )
    return Sweep(
        path=sweep_path,
        study=study,
        configs=check_files(path, "configs", data["configs"], base["configs"]),
        args=check_args(path, data.get("args", [])),
        factors=factors,
        seeds=seeds,
        objectives=objectives,
        constraints=check_constraints(path, data.get("constraints", {})),
        sampler=sampler,
        pruner=pruner,
        trials=check_trials(path, data.get("trials"), sampler["name"]),
        storage=check_storage(path, data.get("storage")),
        root=Path(data.get("root") or Path("runs") / "sweeps" / study),
        max_retries=check_count(path, "max_retries", data.get("max_retries", 3)),
        heartbeat=check_heartbeat(path, data.get("heartbeat", {})),
        outage_limit=check_outage_limit(path, data.get("outage_limit", OUTAGE_LIMIT_S)),
        reference=check_reference(path, data.get("reference", {}), factors),
        fingerprint=fingerprint(data),
        source=path if overrides else None,
    )


def fingerprint(data: dict[str, Any]) -> str:
    """A short hash of what decides the trials; every worker of a study must agree on it."""
    keys = ("configs", "args", "space", "seeds", "metric", "sampler", "constraints")
    decisive = {k: data.get(k) for k in keys}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def check_objectives(path: Path, value: Any) -> tuple[Objective, ...]:
    """One {name, direction} mapping, or a list of them (a multi-objective sweep) whose first
    is a metric validation logs; `params` and `step_seconds` are measured by every trial."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise file_error(path, "metric", "expected {name: val/loss, direction: minimize} or a list")
    objectives = []
    for index, item in enumerate(items):
        key = f"metric[{index}]" if isinstance(value, list) else "metric"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise file_error(path, key, "expected {name: val/loss, direction: minimize}")
        if set(item) - {"name", "direction"}:
            raise file_error(
                path, f"{key}.{sorted(set(item) - {'name', 'direction'})[0]}", "unknown key"
            )
        direction = item.get("direction", "minimize")
        if direction not in DIRECTIONS:
            raise file_error(path, f"{key}.direction", f"{direction!r}; choose one of {DIRECTIONS}")
        objectives.append(Objective(item["name"], direction))
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise file_error(path, "metric", f"an objective is named twice: {names}")
    if objectives[0].measured:
        raise file_error(
            path,
            "metric",
            f"the first objective is reported at every validation, so it must be a logged "
            f"metric such as val/loss, not {objectives[0].name!r}; list {objectives[0].name!r} "
            "after it",
        )
    return tuple(objectives)


def check_constraints(path: Path, value: Any) -> tuple[Constraint, ...]:
    """{name: {max: X} or {min: X}} over logged metrics, `params` or `step_seconds`."""
    if not isinstance(value, dict):
        raise file_error(path, "constraints", "expected a mapping like {params: {max: 50000}}")
    found = []
    for name, bounds in value.items():
        key = f"constraints.{name}"
        if not isinstance(bounds, dict) or not bounds or set(bounds) - set(BOUNDS):
            raise file_error(path, key, f"expected {{max: X}} and/or {{min: X}}, got {bounds!r}")
        for bound, limit in bounds.items():
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                raise file_error(path, f"{key}.{bound}", f"expected a number, got {limit!r}")
            found.append(Constraint(str(name), bound, float(limit)))
    return tuple(found)


def check_name(path: Path, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ "):
        raise file_error(
            path, "study", f"{value!r} is not a name (non-empty, no spaces or slashes)"
        )
    return value


def check_named(path: Path, key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A {name: ..., **options} mapping (or a bare name) whose name is one of `allowed`."""
    value = {"name": value} if isinstance(value, str) else value
    if not isinstance(value, dict) or value.get("name") not in allowed:
        name = value.get("name") if isinstance(value, dict) else value
        raise file_error(path, f"{key}.name", f"unknown {key} {name!r}; choose one of {allowed}")
    check_options(key, value, lambda bad, message: file_error(path, f"{key}.{bad}", message))
    return dict(value)


def check_files(path: Path, key: str, value: Any, folder: Path) -> list[Path]:
    """Config files, relative to the sweep file that names them; each must exist."""
    if not isinstance(value, list) or not value:
        raise file_error(path, key, "expected a non-empty list of LightningCLI config files")
    files = [folder / str(name) for name in value]
    for name, file in zip(value, files, strict=True):
        if not file.is_file():
            raise file_error(path, key, f"config file {name!r} not found (looked for {file})")
    return files


def check_args(path: Path, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str | int | float) for a in value):
        raise file_error(path, "args", "expected a list of `wave-lightning fit` arguments")
    return [str(a) for a in value]


def check_space(path: Path, space: Any, folder: Path) -> list[Factor]:
    if not isinstance(space, dict) or not space:
        raise file_error(path, "space", "the search space is empty; name at least one factor")
    return [check_factor(path, f"space.{name}", name, spec, folder) for name, spec in space.items()]


def check_factor(path: Path, key: str, name: str, spec: Any, folder: Path) -> Factor:
    """One factor: exactly one of choices / configs / int / float, with its options."""
    if name == SEED_PARAM:
        raise file_error(
            path, key, "'seed' is reserved; list the seeds under the top-level `seeds` key"
        )
    kinds = [k for k in FACTOR_KINDS if isinstance(spec, dict) and k in spec]
    if len(kinds) != 1:
        raise file_error(path, key, f"expected exactly one of {', '.join(FACTOR_KINDS)}")
    kind = kinds[0]
    extra = set(spec) - {kind} - FACTOR_OPTIONS[kind]
    if extra:
        raise file_error(path, f"{key}.{sorted(extra)[0]}", f"unknown option of a {kind} factor")
    value = spec[kind]
    if kind == "configs":
        if not isinstance(value, dict) or not value:
            raise file_error(path, f"{key}.configs", "expected a non-empty mapping of label: file")
        files = check_files(path, f"{key}.configs", list(value.values()), folder)
        files = dict(zip(value, files, strict=True))
        return Factor(name, CategoricalDistribution(list(value)), files)
    if kind == "choices":
        if not isinstance(value, list) or not value or len(set(map(repr, value))) != len(value):
            raise file_error(path, f"{key}.choices", "expected a non-empty list of distinct values")
        return Factor(name, CategoricalDistribution(value))
    return Factor(name, check_range(path, f"{key}.{kind}", kind, value, spec))


def check_range(path: Path, key: str, kind: str, value: Any, spec: dict) -> BaseDistribution:
    """An int or float range [low, high], optionally log-scaled or stepped."""
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, number) and not isinstance(v, bool) for v in value)
        or value[0] >= value[1]
    ):
        raise file_error(
            path, key, f"expected [low, high] with low < high ({kind}s), got {value!r}"
        )
    log, step = spec.get("log", False), spec.get("step")
    if log and value[0] <= 0:
        raise file_error(path, key, f"a log range needs low > 0, got {value[0]}")
    if log and step is not None:
        raise file_error(path, key, "a range cannot have both log and step")
    make = IntDistribution if kind == "int" else FloatDistribution
    try:
        if kind == "int":
            return make(value[0], value[1], log=bool(log), step=step or 1)
        return make(float(value[0]), float(value[1]), log=bool(log), step=step)
    except ValueError as error:
        raise file_error(path, key, str(error)) from error


def check_seeds(path: Path, value: Any, sampler: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)
        or len(set(value)) != len(value)
    ):
        raise file_error(
            path, "seeds", f"expected a non-empty list of distinct integers, got {value!r}"
        )
    if sampler != "grid" and len(value) > 1:
        raise file_error(
            path, "seeds", "several seeds are a grid factor; use sampler grid or one seed"
        )
    return value


def check_trials(path: Path, value: Any, sampler: str) -> int | None:
    if sampler == "grid":
        if value is not None:
            raise file_error(
                path, "trials", "a grid sweep runs every grid point once; drop `trials`"
            )
        return None
    if value is None:
        raise file_error(path, "trials", f"sampler {sampler} needs the number of trials")
    return check_count(path, "trials", value)


def check_count(path: Path, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise file_error(path, key, f"expected a non-negative integer, got {value!r}")
    return value


def check_reference(path: Path, value: Any, factors: list[Factor]) -> dict[str, Any]:
    """The reference level of every grid factor: the one given, else the factor's first."""
    if not isinstance(value, dict):
        raise file_error(path, "reference", "expected a mapping of space key: level")
    levels = {f.name: list(f.distribution.choices) for f in factors if f.is_grid}
    for name, level in value.items():
        if name not in levels:
            raise file_error(path, f"reference.{name}", f"not a grid factor; one of {list(levels)}")
        if level not in levels[name]:
            raise file_error(path, f"reference.{name}", f"{level!r} is not one of {levels[name]}")
    return {name: value.get(name, choices[0]) for name, choices in levels.items()}


def check_outage_limit(path: Path, value: Any) -> int:
    """Seconds every process of the sweep retries a storage that went away before it gives up."""
    if check_count(path, "outage_limit", value) == 0:
        raise file_error(path, "outage_limit", "must be at least 1 second")
    return value


def check_heartbeat(path: Path, value: Any) -> dict[str, int]:
    """Database heartbeats: every `interval` s; a trial silent for `grace` s is retried."""
    if not isinstance(value, dict) or set(value) - set(HEARTBEAT):
        raise file_error(path, "heartbeat", f"expected a mapping with keys {sorted(HEARTBEAT)}")
    beat = {**HEARTBEAT, **value}
    for key, seconds in beat.items():
        if check_count(path, f"heartbeat.{key}", seconds) == 0:
            raise file_error(path, f"heartbeat.{key}", "must be at least 1 second")
    if beat["grace"] <= beat["interval"]:
        raise file_error(path, "heartbeat.grace", "must be longer than heartbeat.interval")
    return beat


def check_storage(path: Path, value: Any) -> str | None:
    """An SQLAlchemy URL whose database driver is installed, or None (the journal file)."""
    if value is None:
        return None
    if not isinstance(value, str) or "://" not in value:
        raise file_error(path, "storage", f"expected an SQLAlchemy URL or nothing, got {value!r}")
    try:
        make_url(value).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as error:
        scheme = value.split("://", 1)[0]
        raise file_error(
            path,
            "storage",
            f"{shown_url(value)}: no SQLAlchemy dialect {scheme!r} ({error.__class__.__name__}); "
            "use e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB or sqlite:///FILE",
        ) from error
    return value


def shown_url(url: str) -> str:
    """A storage URL fit to print: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
