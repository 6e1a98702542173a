"""scripts/gpu_check.sh as far as a machine without a GPU takes it: it fails clearly and fast,
still writing its JSON with every stage; its time limits end whole process groups; its carried
wheels reach the stages; its pytest stages count a skipped GPU test as a failure."""

import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

SPEC = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts/gpu_check.py")
gpu_check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gpu_check)

GPU_STAGES = ["gpu_tests", "cuda_forms", "step_table", "fit", "sweep"]


def run_check(*args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    """`bash scripts/gpu_check.sh ARGS` with no CUDA device visible (OUT=out where given)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env |= {"GPU_CHECK_PYTHON": sys.executable}
    env.pop("OUT", None)
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_stage_budgets_fit_in_eight_minutes():
    assert list(gpu_check.BUDGET_S) == list(gpu_check.STAGES)
    assert sum(gpu_check.BUDGET_S.values()) <= 8 * 60
    assert gpu_check.BUDGET_S["sweep"] > gpu_check.TRIALS_BUDGET_S
    assert tuple(GPU_STAGES) == gpu_check.GPU_STAGES


def test_without_cuda_it_fails_fast_with_one_line_and_writes_every_stage(tmp_path):
    start = time.monotonic()
    done = run_check("--work", str(tmp_path / "work"), "--wheels", str(tmp_path), out=tmp_path)
    assert time.monotonic() - start < 60
    path = tmp_path / "gpu_check.json"
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"gpu_check: FAILED environment: no CUDA device (torch {torch_version()}: "
        f"torch.cuda.is_available() is False); skipped {', '.join(GPU_STAGES)}; see {path}"
    ]
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and record["work"] == str(tmp_path / "work")
    stages = {stage["name"]: stage for stage in record["stages"]}
    assert list(stages) == list(gpu_check.STAGES)
    assert stages["setup"]["status"] == "skipped"
    assert stages["setup"]["reason"] == f"no wheels in {tmp_path}: the machine's own packages"
    environment = stages["environment"]
    assert environment["status"] == "failed"
    assert environment["reason"].startswith("no CUDA device (torch ")
    assert environment["found"]["cuda_available"] is False
    assert environment["found"]["device"] is None
    assert 0 < environment["seconds"] < environment["limit_s"]
    for name in GPU_STAGES:
        assert stages[name]["status"] == "skipped" and stages[name]["reason"] == "no CUDA device"
    for stage in record["stages"]:
        assert stage["log"] == str(tmp_path / "gpu_check.log")
        assert stage["limit_s"] == gpu_check.BUDGET_S[stage["name"]]
    assert "== environment: " in (tmp_path / "gpu_check.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log", "work"]


def torch_version() -> str:
    import torch

    return torch.__version__


def write_probe_wheel(folder: Path) -> Path:
    """A wheel of one module, gpu_check_probe, as pip installs it."""
    folder.mkdir()
    path = folder / "gpu_check_probe-1.0-py3-none-any.whl"
    info = "gpu_check_probe-1.0.dist-info"
    files = {
        "gpu_check_probe.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-check-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def test_carried_wheels_are_installed_and_come_first_on_the_stages_path(tmp_path):
    wheel = write_probe_wheel(tmp_path / "wheels")
    out = tmp_path / "out" / "check.json"
    work = tmp_path / "work"
    done = run_check("--out", str(out), "--work", str(work), "--wheels", str(wheel.parent))
    assert done.returncode == 1, done.stderr
    setup, environment = json.loads(out.read_text())["stages"][:2]
    site = work / "site"
    assert setup["status"] == "passed" and setup["reason"] is None
    assert setup["wheels"] == [wheel.name] and setup["site"] == str(site)
    assert (site / "gpu_check_probe.py").read_text() == "VALUE = 1\n"
    assert environment["found"]["pythonpath"].split(os.pathsep)[:2] == [str(site), str(ROOT)]


def test_out_is_needed_where_OUT_is_not_set(monkeypatch, capsys):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit):
        gpu_check.parse_args([])
    assert "--out PATH is needed where OUT is not set" in capsys.readouterr().err
    monkeypatch.setenv("OUT", "/somewhere")
    assert gpu_check.parse_args([]).out == Path("/somewhere/gpu_check.json")


def process_ended(pid: int, within: float) -> bool:
    """Whether `pid` is gone or dead (a zombie: orphaned, it waits for a reaper that need not
    be prompt in a container) within `within` seconds; the kill itself lands asynchronously."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in "ZX":
            return True
        time.sleep(0.05)
    return False


def make_check(tmp_path: Path):
    return gpu_check.Check(tmp_path / "check.json", tmp_path, tmp_path / "no-wheels")


def test_a_stage_past_its_limit_ends_with_its_whole_process_group(tmp_path):
    check = make_check(tmp_path)
    pid_file = tmp_path / "pid"
    stage = {"name": "slow"}
    command = ["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    start = time.monotonic()
    assert check.run(stage, command, limit=1) is None
    assert time.monotonic() - start < 15
    assert gpu_check.failed_run(None, 1) == "ran past its limit of 1 s"
    child = int(pid_file.read_text())
    assert process_ended(child, within=10)  # the background sleep went with its group
    assert "== slow: bash -c" in check.log.read_text()


TESTS = """
import pytest

def test_passes():
    pass

@pytest.mark.skip(reason="no GPU")
def test_skipped():
    pass

def test_fails():
    assert False
"""


def test_pytest_stages_count_skipped_tests_as_failures(tmp_path):
    tests = tmp_path / "test_probe.py"
    tests.write_text(TESTS)
    stage = {"name": "probe"}
    why = gpu_check.pytest_stage(make_check(tmp_path), stage, 60, [tests])
    assert why == "1 failed, 1 skipped"
    assert stage["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    # the module's dotted path depends on where pytest puts its rootdir; the module name does not
    assert {test.rsplit(".", 1)[-1]: outcome for test, outcome in stage["tests"].items()} == {
        "test_probe::test_passes": "passed",
        "test_probe::test_skipped": "skipped",
        "test_probe::test_fails": "failed",
    }


def test_final_metrics_are_the_last_value_of_each_column(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "epoch,step,train/loss,val/loss,test/loss\n0,49,2.0,,\n0,99,,1.5,\n1,149,1.0,,\n"
        "1,199,,0.5,\n2,200,,,0.25\n"
    )
    assert gpu_check.final_metrics(metrics) == {
        "epoch": 2.0,
        "step": 200.0,
        "train/loss": 1.0,
        "val/loss": 0.5,
        "test/loss": 0.25,
    }
