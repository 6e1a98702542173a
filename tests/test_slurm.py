"""The recipes in scripts/slurm/ on a real single-node SLURM (scripts/start-slurm.sh, which .ci/run
starts), on its CPU partition, as written: a training job requeued by `scontrol requeue` and by
its time-limit signal, a 2-rank DDP job signalled at chosen points of a step, a sweep array with
a task requeued mid-trial. Each ends COMPLETED, with the steps of an uninterrupted run logged
once and no checkpoint left behind; every wait is bounded, so a hang fails the test."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.fault_points import callback_arg
from tests.helpers import ROOT, tiny_copy_args
from tests.sweeps import wait_for
from tests.test_sweep_faults import (
    HOLD_FILE,
    HOLD_STEP,
    assert_retried,
    drop,
    fault_sweep,
    postgres_extra,
    study_of,
)
from wave_lightning.run.preemption import PREEMPTED
from wave_lightning.sweep.spec import load_sweep

pytestmark = pytest.mark.slow

TRAIN = ROOT / "scripts/slurm/train.sbatch"
SWEEP_ARRAY = ROOT / "scripts/slurm/sweep-array.sbatch"
STEPS = 60
RUN = [
    *tiny_copy_args(
        delay=2, memory_length=2, batch_size=4, train_batches=6, val_size=8, test_size=4
    ),
    "--trainer.max_steps", str(STEPS),
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


@pytest.fixture(scope="module", autouse=True)
def slurm() -> None:
    """Skip without a SLURM here; fail instead where CI asked for one."""
    up = (
        shutil.which("sbatch")
        and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0
    )
    if up:
        return
    if os.environ.get("WAVE_LIGHTNING_REQUIRE_SLURM") == "1":
        pytest.fail("WAVE_LIGHTNING_REQUIRE_SLURM=1 but no SLURM answers (scripts/start-slurm.sh)")
    pytest.skip("no SLURM here (scripts/start-slurm.sh starts one)")


def job_env() -> dict[str, str]:
    """The submitting environment a job inherits: this venv's wave-lightning on PATH, the tests'
    callbacks importable, one thread, no SLURM variables of an enclosing job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "PYTHONPATH": path}


def submit(script: Path, out: Path, *args: str, sbatch: tuple[str, ...] = ()) -> str:
    """Submit `script` with `args` from the repository root; the job id."""
    command = ["sbatch", "--parsable", f"--chdir={ROOT}", f"--output={out}", *sbatch]
    result = subprocess.run(
        [*command, str(script), *args], env=job_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def jobs(job: str) -> list[dict[str, str]]:
    """`scontrol show job` of `job` (every task of an array), as key=value fields."""
    result = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [
        dict(f.split("=", 1) for f in line.split() if "=" in f)
        for line in result.stdout.splitlines()
    ]


def start_requeued(job: str) -> None:
    """SLURM holds a requeued job back (BeginTime) for a while: start it now."""
    for task in jobs(job):
        if task["JobState"] == "PENDING" and task.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={task['JobId']}", "StartTime=now"])


def finish(job: str, out: Path, timeout: float = 480) -> list[dict[str, str]]:
    """Wait until every task of `job` is in a final state, starting requeued ones at once; a
    job still running at `timeout` is cancelled and fails the test (never a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = jobs(job)
        if all(task["JobState"] in FINAL for task in tasks):
            return tasks
        start_requeued(job)
        time.sleep(1)
    subprocess.run(["scancel", job])
    text = out.read_text() if out.exists() else ""
    raise AssertionError(f"job {job} did not finish in {timeout} s: {jobs(job)}\n{text[-3000:]}")


def state_of(job: str) -> str:
    return jobs(job)[0]["JobState"]


def logged(root: Path) -> list[tuple[int, list[str]]]:
    """Every metrics.csv row as (step, the metrics it holds), in step order."""
    with open(root / "metrics.csv") as file:
        rows = csv.DictReader(file)
        return sorted((int(r.pop("step")), sorted(k for k, v in r.items() if v)) for r in rows)


def weights(root: Path) -> dict:
    path = root / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The same run, never stopped, on one process outside SLURM."""
    root = tmp_path_factory.mktemp("uninterrupted")
    command = [sys.executable, "-m", "wave_lightning", "fit", *RUN]
    env = {**job_env(), "OMP_NUM_THREADS": "1"}
    command += ["--trainer.default_root_dir", str(root), "--trainer.accelerator", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def assert_finished_like(run: Path, reference: Path, atol: float = 0.0) -> None:
    """The run logged the steps of `reference`, each once, reached its weights, and left no
    preemption or Lightning hpc checkpoint behind."""
    assert logged(run) == logged(reference)
    for name, value in weights(reference).items():
        torch.testing.assert_close(weights(run)[name], value, rtol=0, atol=atol)
    assert not (run / "checkpoints" / PREEMPTED).exists()
    assert not list(run.glob("hpc_ckpt_*.ckpt"))


def stopped_at(job: str, run: Path) -> int:
    """Wait until `job` is requeued (pending); the step of the checkpoint its stop wrote."""

    def requeued():
        return jobs(job)[0]["JobState"] == "PENDING" and jobs(job)[0]["Restarts"] != "0"

    wait_for(requeued, 240, f"job {job} to be requeued")
    return torch.load(run / "checkpoints" / PREEMPTED, weights_only=False)["global_step"]


def test_train_job_requeued_by_scontrol_and_by_its_time_limit(tmp_path, uninterrupted):
    run, out = tmp_path / "run", tmp_path / "job.out"
    # from step 10 on, 2.5 s a step in the first two starts: the second, resumed at step 10 or
    # soon after, trains longer than the 90 s after which its 3-minute limit's SIGUSR1 has come
    # (90 s before the end, or up to 60 s earlier: SLURM's resolution); the third runs at full
    # speed, and a time-limit signal after its training is ignored while it tests
    slow = callback_arg("SlowSteps", seconds=2.5, step=10, mark="training", restarts=[0, 1])
    job = submit(TRAIN, out, *RUN, f"--trainer.default_root_dir={run}", slow, sbatch=("--time=3",))
    wait_for(lambda: (run / "training").exists(), 240, "the job to train")
    subprocess.run(["scontrol", "requeue", job], check=True)  # SIGTERM, then queued again
    assert 10 <= stopped_at(job, run) < STEPS
    (task,) = finish(job, out, timeout=600)  # the next start gets the time-limit signal
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0].startswith(f"job {job}: 1 node(s) x 1 task(s) on cpu, 1 CPU(s) per task")
    assert task["JobState"] == "COMPLETED" and int(task["Restarts"]) >= 2, task
    assert f"requeued SLURM job {job}" in text  # rank 0, on the time-limit signal
    assert "preempted.ckpt" in text  # `--ckpt_path last` resumed from the signal's checkpoint
    assert_finished_like(run, uninterrupted)


DDP = ("--nodes=1", "--ntasks-per-node=2")
SIGNALS = {  # the signal SLURM sends at the time limit, at points of step 3 (the 4th step)
    "rank 1 in its forward": {"rank": 1, "phase": "forward"},
    "rank 1 in its backward": {"rank": 1, "phase": "backward"},
    "rank 1 in its backward, rank 0 a second later": {
        "rank": 1,
        "phase": "backward",
        "then_rank0": 1.0,
    },
}


@pytest.mark.parametrize("where", [*SIGNALS, "scancel --signal=USR1 to the job"])
def test_ddp_job_signalled_checkpoints_requeues_and_finishes(tmp_path, uninterrupted, where):
    run, out = tmp_path / "run", tmp_path / "job.out"
    if where in SIGNALS:
        fault = callback_arg("SignalInStep", step=3, signum=int(signal.SIGUSR1), **SIGNALS[where])
    else:
        fault = callback_arg("SlowSteps", seconds=0.5, step=10, mark="training")
    job = submit(TRAIN, out, *RUN, f"--trainer.default_root_dir={run}", fault, sbatch=DDP)
    if where not in SIGNALS:
        wait_for(lambda: (run / "training").exists(), 240, "the job to train")
        subprocess.run(["scancel", "--signal=USR1", job], check=True)
    step = stopped_at(job, run)
    assert step == 4 if where in SIGNALS else 10 <= step < STEPS
    (task,) = finish(job, out)
    text = out.read_text()
    assert text.splitlines()[0].startswith(f"job {job}: 1 node(s) x 2 task(s) on cpu")
    assert (task["JobState"], task["Restarts"]) == ("COMPLETED", "1"), task
    assert text.count(f"requeued SLURM job {job}") == 1  # by rank 0, once
    assert_finished_like(run, uninterrupted, atol=1e-6)  # DDP averages: equal to rounding


def test_sweep_array_task_requeued_mid_trial(tmp_path):
    path = fault_sweep(tmp_path, seeds=[0, 1, 2, 3], hold=[0], **postgres_extra())
    sweep, out = load_sweep(path), tmp_path / "array-%a.out"
    job = submit(SWEEP_ARRAY, out, str(path), sbatch=("--array=0-1",))
    hold = wait_for(lambda: list(sweep.root.glob(f"trial-*/{HOLD_FILE}")), 300, "a trial to hold")
    pid = json.loads(hold[0].read_text())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_text().split("\0")
    array_task = dict(v.split("=", 1) for v in environ if "=" in v)["SLURM_ARRAY_TASK_ID"]
    subprocess.run(["scontrol", "requeue", f"{job}_{array_task}"], check=True)  # SIGTERM to all
    tasks = finish(job, tmp_path / f"array-{array_task}.out")
    assert [t["JobState"] for t in tasks] == ["COMPLETED", "COMPLETED"], tasks
    assert sorted(t["Restarts"] for t in tasks) == ["0", "1"]
    study = study_of(sweep)
    (failed,) = [t for t in study.trials if t.user_attrs.get("fail_reason")]
    reason = f"preempted (SIGTERM): stopped at step {HOLD_STEP} with checkpoints/preempted.ckpt"
    assert_retried(sweep, failed.number, HOLD_STEP, reason)
    first = (tmp_path / "array-0.out").read_text().splitlines()[0]
    assert first.startswith(f"sweep worker {job}_0 on ") and "GPU none, 1 CPU(s)" in first
    drop(sweep)
