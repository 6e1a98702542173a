"""The prepared GPU check (docs/performance.md): one command, at most 8 minutes on one GPU, one
JSON. Called by scripts/gpu_check.sh:

    bash scripts/gpu_check.sh                     # JSON at $OUT/gpu_check.json (OUT set)
    bash scripts/gpu_check.sh --out PATH          # or at PATH
    bash scripts/gpu_check.sh --download-wheels   # beforehand, where pip reaches PyPI

The stages run in order, each in its own process group under its own time limit (BUDGET_S):

    setup         the carried wheels (.whl/) installed into a folder put on PYTHONPATH
    environment   torch, CUDA, the device, Triton and the project's packages
    gpu_tests     pytest -m gpu over the test files that hold GPU tests (but cuda_forms')
    cuda_forms    tests/test_cuda_forms.py: every CUDA form against the reference
    step_table    benchmarks/training_step.py --device cuda --quick (its own JSON beside)
    fit           a 200-step copy-task fit on one GPU, its final metrics
    sweep         sweeps/gpu_check.yaml with --gpus 0: 2 trials, both COMPLETE

Each stage is recorded (status passed / failed / skipped, the reason, wall seconds, limit, command,
log and the end of its output) and the JSON is rewritten before and after each stage, so a check
stopped from outside still leaves what finished. Without a CUDA device the environment stage
fails with "no CUDA device" and every later stage is skipped for that reason. The exit status
is 0 when no stage failed, else 1, with one line on stderr naming the failures.
"""

import argparse
import contextlib
import csv
import datetime
import importlib.metadata
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {  # seconds per stage; together at most 8 minutes
    "setup": 30,
    "environment": 45,
    "gpu_tests": 45,
    "cuda_forms": 90,
    "step_table": 120,
    "fit": 60,
    "sweep": 90,
}
TRIALS_BUDGET_S = 30  # reading the sweep's trials, within the sweep's budget
# what the project needs that the GPU machine's image lacks (docs/performance.md): carried as
# wheels of the versions installed where they are downloaded
WHEELS = (
    "jsonargparse",
    "docstring-parser",
    "typeshed-client",
    "optuna",
    "alembic",
    "mako",
    "sqlalchemy",
    "colorlog",
    "mnist1d",
)
GPU_PYTHON = "3.12"  # the GPU machine's python3
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# module -> distribution: what the stages import, with versions in the JSON
PACKAGES = {
    "triton": "triton",
    "lightning": "lightning",
    "torchmetrics": "torchmetrics",
    "jsonargparse": "jsonargparse",
    "docstring_parser": "docstring-parser",
    "typeshed_client": "typeshed-client",
    "optuna": "optuna",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "mnist1d": "mnist1d",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "yaml": "pyyaml",
    "pytest": "pytest",
}
FORMS_TESTS = ROOT / "tests" / "test_cuda_forms.py"
FIT_CONFIG = ROOT / "conf" / "experiment" / "copy_wrnn.yaml"
FIT_ARGS = ["--trainer.max_steps=200", "--trainer.accelerator=gpu", "--trainer.devices=1"]
SWEEP_FILE = ROOT / "sweeps" / "gpu_check.yaml"
SWEEP_ARGS = ["--trainer.accelerator=gpu", "--trainer.devices=1"]  # fit's, after `--`
SWEEP_TRIALS = 2
TAIL_CHARS = 3000


def download_wheels(folder: Path) -> None:
    """Download the WHEELS, at the versions installed here, for the GPU machine's python."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", GPU_PYTHON, "--implementation", "cp", "-d", str(folder)]
    command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(command + pins, check=True)
    print(f"wheels for python {GPU_PYTHON} in {folder}: {', '.join(pins)}")


def describe_environment(path: str) -> None:
    """Write to `path` what the stages run on: python, torch, CUDA, the device and, where there
    is one, the packages' versions (missing ones listed) and whether the project imports."""
    info: dict = {"python": sys.version.split()[0], "pythonpath": os.environ.get("PYTHONPATH")}
    import torch

    info |= {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    info["cuda_available"] = torch.cuda.is_available()
    info["device"] = torch.cuda.get_device_name(0) if info["cuda_available"] else None
    if info["cuda_available"]:
        info |= package_versions()
    Path(path).write_text(json.dumps(info, indent=1))


def package_versions() -> dict:
    """The PACKAGES' versions, the missing ones, and whether fit's and sweep's modules import."""
    info: dict = {"versions": {}, "missing": []}
    for module, distribution in PACKAGES.items():
        try:
            __import__(module)
            info["versions"][distribution] = importlib.metadata.version(distribution)
        except ImportError:
            info["missing"].append(distribution)
    try:
        import wave_lightning.fit  # noqa: F401
        import wave_lightning.sweep.cli  # noqa: F401

        info["project_imports"] = "ok"
    except ImportError as error:
        info["project_imports"] = f"{type(error).__name__}: {error}"
    return info


def write_trials(path: str, sweep_file: str, *overrides: str) -> None:
    """Write to `path` the number, state, value and parameters of each trial of the sweep
    (derived by fit's `overrides`, as `sweep run FILE -- OVERRIDES` ran it)."""
    from wave_lightning.sweep.spec import load_sweep
    from wave_lightning.sweep.storage import read_study

    study = read_study(load_sweep(sweep_file, list(overrides)))
    trials = [
        {"number": t.number, "state": t.state.name, "values": t.values, "params": t.params}
        for t in study.trials
    ]
    Path(path).write_text(json.dumps(trials, indent=1))


def helper_command(python: str, function: str, *args: str) -> list[str]:
    """A command that runs one of this module's functions in the stages' python and paths."""
    code = f"import sys; sys.path.insert(0, sys.argv.pop(1)); from gpu_check import {function}"
    return [python, "-c", f"{code}; {function}(*sys.argv[1:])", str(Path(__file__).parent), *args]


def junit_outcomes(path: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from pytest's JUnit XML."""
    outcomes = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            kinds[0] if kinds else "", "passed"
        )
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


def final_metrics(metrics_csv: Path) -> dict[str, float]:
    """The last value logged of each column of a run's metrics.csv."""
    final = {}
    with metrics_csv.open() as rows:
        for row in csv.DictReader(rows):
            final |= {key: float(value) for key, value in row.items() if value not in ("", None)}
    return final


class Check:
    """The stages' shared state: the record (rewritten to the JSON), the log, the work folder,
    the python and the environment every stage runs with."""

    def __init__(self, out: Path, work: Path, wheels: Path) -> None:
        self.out, self.work, self.wheels = out, work, wheels
        self.log = out.with_suffix(".log")
        self.table = out.parent / "training_step_cuda.json"
        self.python = sys.executable
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        self.no_gpu: str | None = None  # why the GPU stages cannot run
        self.record: dict = {
            "check": "scripts/gpu_check.sh",
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": git_commit(),
            "work": str(work),
            "log": str(self.log),
            "stages": [],
        }

    def save(self) -> None:
        """Rewrite the JSON (whole, by a rename)."""
        partial = self.out.with_suffix(".partial")
        partial.write_text(json.dumps(self.record, indent=1))
        partial.replace(self.out)

    def run(self, stage: dict, command: list[str], limit: float, cwd: Path = ROOT) -> int | None:
        """Run `command` in its own process group with the stage's output appended to the log;
        its exit status, None when it ran past `limit` seconds (then its group is ended)."""
        stage.setdefault("commands", []).append(shlex.join(command))
        with self.log.open("a") as log:
            log.write(f"\n== {stage['name']}: {shlex.join(command)} (limit {limit:.0f} s)\n")
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                code = None
                end_group(process, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            end_group(process, signal.SIGKILL)  # and whatever it left behind
            process.wait()
        return code


def end_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def git_commit() -> str | None:
    """HEAD of the checkout, with '+changes' where the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if changed else "")


def failed_run(code: int | None, limit: float) -> str | None:
    """Why a command failed, or None when it exited 0."""
    if code is None:
        return f"ran past its limit of {limit:.0f} s"
    return f"exit status {code}" if code else None


# --- the stages: each fills in its record and returns the reason it failed (None: passed) ---


def setup(check: Check, stage: dict, limit: float) -> str | None:
    wheels = sorted(check.wheels.glob("*.whl"))
    if not wheels:
        stage["status"] = "skipped"
        return f"no wheels in {check.wheels}: the machine's own packages"
    site = check.work / "site"
    stage["wheels"], stage["site"] = [w.name for w in wheels], str(site)
    command = [check.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    command += ["--no-compile", "--no-cache-dir", "--target", str(site), *map(str, wheels)]
    why = failed_run(check.run(stage, command, limit), limit)
    if why is None:
        check.env["PYTHONPATH"] = os.pathsep.join([str(site), check.env["PYTHONPATH"]])
    return why


def environment(check: Check, stage: dict, limit: float) -> str | None:
    path = check.work / "environment.json"
    code = check.run(stage, helper_command(check.python, "describe_environment", str(path)), limit)
    if code != 0:
        check.no_gpu = "the environment could not be read"
        return failed_run(code, limit)
    info = stage["found"] = json.loads(path.read_text())
    if not info["cuda_available"]:
        check.no_gpu = "no CUDA device"
        return f"no CUDA device (torch {info['torch']}: torch.cuda.is_available() is False)"
    problems = []
    if info["missing"]:
        problems.append(f"missing packages {', '.join(info['missing'])}")
    if info["project_imports"] != "ok":
        problems.append(f"wave_lightning does not import: {info['project_imports']}")
    if problems:
        return "; ".join(problems) + " (carry wheels: bash scripts/gpu_check.sh --download-wheels)"
    return None


def pytest_stage(check: Check, stage: dict, limit: float, files: list[Path], *args: str):
    xml = check.work / f"{stage['name']}.xml"
    command = [check.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    command += ["--junitxml", str(xml), *map(str, files)]
    code = check.run(stage, command, limit)
    outcomes = stage["tests"] = junit_outcomes(xml) if xml.is_file() else {}
    counts = stage["counts"] = {
        kind: sum(o == kind for o in outcomes.values())
        for kind in ("passed", "failed", "error", "skipped")
    }
    if code is None or not outcomes:
        return failed_run(code, limit) or "no test ran"
    bad = {kind: n for kind, n in counts.items() if kind != "passed" and n}
    if bad:  # a skipped GPU test on a GPU machine checked nothing
        return ", ".join(f"{n} {kind}" for kind, n in bad.items())
    return failed_run(code, limit)


def gpu_tests(check: Check, stage: dict, limit: float) -> str | None:
    files = [
        path
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if path != FORMS_TESTS and "pytest.mark.gpu" in path.read_text()
    ]
    return pytest_stage(check, stage, limit, files, "-m", "gpu")


def cuda_forms(check: Check, stage: dict, limit: float) -> str | None:
    return pytest_stage(check, stage, limit, [FORMS_TESTS])


def step_table(check: Check, stage: dict, limit: float) -> str | None:
    command = [check.python, str(ROOT / "benchmarks" / "training_step.py"), "--device", "cuda"]
    command += ["--quick", "--budget-s", "30", "--json", str(check.table)]
    why = failed_run(check.run(stage, command, limit), limit)
    if why is None:
        stage["table"] = str(check.table)
        stage["rows"] = len(json.loads(check.table.read_text())["rows"])
    return why


def fit(check: Check, stage: dict, limit: float) -> str | None:
    run_dir = check.work / "fit"
    command = [check.python, "-m", "wave_lightning", "fit", "--config", str(FIT_CONFIG)]
    command += [*FIT_ARGS, "--trainer.default_root_dir", str(run_dir)]
    stage["run_dir"] = str(run_dir)
    why = failed_run(check.run(stage, command, limit), limit)
    metrics = run_dir / "metrics.csv"
    final = stage["final_metrics"] = final_metrics(metrics) if metrics.is_file() else {}
    if why is None and "test/loss" not in final:
        why = "no test/loss in metrics.csv"
    return why


def sweep(check: Check, stage: dict, limit: float) -> str | None:
    folder = check.work / "sweep"  # the derived sweep's root, runs/sweeps/gpu-check-HASH, under it
    folder.mkdir()
    start = time.monotonic()
    command = [check.python, "-m", "wave_lightning", "sweep", "run", str(SWEEP_FILE)]
    command += ["--gpus", "0", "--", *SWEEP_ARGS]
    code = check.run(stage, command, limit - TRIALS_BUDGET_S, cwd=folder)
    stage["root"] = str(folder / "runs" / "sweeps")
    path = check.work / "trials.json"
    left = limit - (time.monotonic() - start)
    reader = helper_command(check.python, "write_trials", str(path), str(SWEEP_FILE), *SWEEP_ARGS)
    read = check.run(stage, reader, left, cwd=folder)
    trials = stage["trials"] = json.loads(path.read_text()) if read == 0 else []
    why = failed_run(code, limit - TRIALS_BUDGET_S)
    if why is None and read != 0:
        why = f"its trials could not be read ({failed_run(read, left)})"
    states = [t["state"] for t in trials]
    if why is None and states != ["COMPLETE"] * SWEEP_TRIALS:
        why = f"trial states {states}, not {SWEEP_TRIALS} COMPLETE"
    return why


STAGES: dict[str, Callable[[Check, dict, float], str | None]] = {
    "setup": setup,
    "environment": environment,
    "gpu_tests": gpu_tests,
    "cuda_forms": cuda_forms,
    "step_table": step_table,
    "fit": fit,
    "sweep": sweep,
}
GPU_STAGES = ("gpu_tests", "cuda_forms", "step_table", "fit", "sweep")


def run_stage(check: Check, name: str) -> dict:
    """Run one stage (or skip it where the GPU stages cannot run) and record it."""
    limit = BUDGET_S[name]
    stage = {"name": name, "status": "running", "limit_s": limit, "log": str(check.log)}
    check.record["stages"].append(stage)
    if name in GPU_STAGES and check.no_gpu:
        stage |= {"status": "skipped", "reason": check.no_gpu, "seconds": 0.0}
        check.save()
        return stage
    check.save()
    offset = check.log.stat().st_size if check.log.exists() else 0
    start = time.monotonic()
    try:
        why = STAGES[name](check, stage, limit)
    except Exception as error:  # a fault of this script: recorded, and the other stages run
        why = f"the check itself failed: {type(error).__name__}: {error}"
    stage["seconds"] = round(time.monotonic() - start, 1)
    if stage["status"] == "running":
        stage["status"] = "failed" if why else "passed"
    stage["reason"] = why
    if check.log.exists():
        with check.log.open() as log:
            log.seek(offset)
            stage["output_tail"] = log.read()[-TAIL_CHARS:]
    check.save()
    return stage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="the JSON (default: $OUT/gpu_check.json)")
    parser.add_argument("--work", type=Path, help="fit and sweep runs (default: a new temp dir)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="default: .whl/")
    parser.add_argument(
        "--download-wheels", action="store_true", help="fetch the wheels into --wheels and stop"
    )
    args = parser.parse_args(argv)
    if args.out is None and not args.download_wheels:
        if not os.environ.get("OUT"):
            parser.error("--out PATH is needed where OUT is not set")
        args.out = Path(os.environ["OUT"]) / "gpu_check.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.download_wheels:
        download_wheels(args.wheels)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    check = Check(args.out.resolve(), work.resolve(), args.wheels)
    start = time.monotonic()
    stages = [run_stage(check, name) for name in STAGES]
    check.record["seconds"] = round(time.monotonic() - start, 1)
    failed = [s for s in stages if s["status"] == "failed"]
    check.record["status"] = "failed" if failed else "passed"
    check.save()
    if failed:
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in failed)
        skipped = [s["name"] for s in stages if s["status"] == "skipped" and s["name"] != "setup"]
        also = f"; skipped {', '.join(skipped)}" if skipped else ""
        print(f"gpu_check: FAILED {reasons}{also}; see {check.out}", file=sys.stderr)
        return 1
    print(f"gpu_check: passed in {check.record['seconds']:.0f} s; see {check.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
