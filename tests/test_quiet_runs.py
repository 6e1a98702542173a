"""A fit, its resume and `analyze` print what happened and none of the known noise."""

import os
import re
import subprocess
import sys
import warnings

import pytest

from tests.helpers import ROOT, path_with_fake, tiny_copy_args
from wave_lightning.fit import check_args
from wave_lightning.sweep.validate import Checker

NOISE = [
    "litlogger",
    "litmodels",
    "LeafSpec",
    "is an instance of `nn.Module`",
    "could not find the monitored key",
]
TINY = ["--data.train_batches=10", "--trainer.log_every_n_steps=5", "--data.val_size=64"]


def wave_lightning(*args: str, cwd) -> str:
    """Run `python -m wave_lightning ARGS` as a user would; its stdout and stderr together."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "wave_lightning", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def assert_quiet(output: str) -> None:
    assert [noise for noise in NOISE if noise in output] == []
    assert re.findall(r"^epoch \d+ step \d+: *$", output, flags=re.MULTILINE) == []


@pytest.mark.slow
def test_fit_resume_and_analyze_print_no_known_noise(tmp_path):
    run = tmp_path / "run"
    fit = ["fit", *tiny_copy_args(), *TINY, f"--trainer.default_root_dir={run}"]
    first = wave_lightning(*fit, "--trainer.max_steps=20", cwd=tmp_path)
    assert_quiet(first)
    assert re.search(r"^epoch 1 step 20: train/loss=\S+ val/acc=", first, re.MULTILINE)

    # last.ckpt was written at epoch 1's end: the resume runs that end's hooks again
    resumed = wave_lightning(*fit, "--trainer.max_steps=30", "--ckpt_path=last", cwd=tmp_path)
    assert_quiet(resumed)
    assert re.findall(r"^epoch \d+ step \d+:", resumed, re.MULTILINE) == ["epoch 2 step 30:"]

    ckpt = run / "checkpoints" / "last.ckpt"
    analyzed = wave_lightning(
        "analyze", "--ckpt", str(ckpt), "--examples=4", "--onset-examples=64", cwd=tmp_path
    )
    assert_quiet(analyzed)
    assert "WaveRNN: speed" in analyzed and "rings.gif" in analyzed


def test_a_sweeps_check_prints_nothing_of_lightnings(tmp_path, monkeypatch, caplog):
    """The checks before a sweep's first trial build each point's trainer: without quiet() each
    logged the device lines and the cloud tip and (where SLURM is installed, here a fake srun on
    PATH) warned to use srun."""
    monkeypatch.setenv("PATH", path_with_fake(tmp_path, "srun", "#!/bin/sh\n"))
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    args = [
        *tiny_copy_args(),
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    lightning_noise = ("GPU available", "The `srun` command is available")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_args(args)  # the control: unquieted, Lightning prints both
    shown = caplog.text + "".join(str(w.message) for w in caught)
    assert all(noise in shown for noise in lightning_noise)
    caplog.clear()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Checker().refusal(args) is None
    shown = caplog.text + "".join(str(w.message) for w in caught)
    assert [noise for noise in (*lightning_noise, *NOISE) if noise in shown] == []
