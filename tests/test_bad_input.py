"""Mistakes a user makes stop with one line naming what is wrong, before anything is written."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, tiny_copy_args
from wave_lightning.cli import main
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import load_study, open_storage

TINY = ["--data.batch_size", "8", "--data.train_batches", "3", "--data.val_size", "16"]
POSTGRES = os.environ.get("WAVE_LIGHTNING_TEST_POSTGRES_URL")


def one_line_error(args: list[str], capsys) -> str:
    """The `error: ...` line `wave-lightning ARGS` exits with (no traceback, nothing printed)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert capsys.readouterr().out == ""
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# fit


def fit(root: Path, *args: str) -> list[str]:
    return ["fit", *tiny_copy_args(delay=2), *TINY, "--trainer.default_root_dir", str(root), *args]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.layer.init_args.n_hid", "-3"], "WaveRNN: n_hid must be a positive integer, got -3"),  # noqa: E501
        (["--model.layer.init_args.kernel_size", "4"], "WaveRNN: kernel_size must be odd, got 4"),
        (["--data.delay", "-1"], "CopyTask: delay must be >= 0 with layout='paper', got -1"),
        (
            ["--model.init_args.layer.init_args.input_size", "7"],
            "model.init_args.layer.init_args.input_size is set from data.input_size (the data "
            "decides it); remove model.init_args.layer.init_args.input_size from the command "
            "line or config",
        ),
        (["--model.init_args.seq_len", "7"], "model.init_args.seq_len is set from data.seq_len"),
        (["--threads", "0"], "threads must be a positive integer, got 0"),
    ],
    ids=["negative-n_hid", "even-kernel", "negative-delay", "linked-input_size", "linked-seq_len",
         "threads"],
)  # fmt: skip
def test_fit_refuses_a_bad_value_in_one_line(tmp_path, capsys, args, message):
    assert one_line_error(fit(tmp_path / "run", *args), capsys).startswith(f"error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fast_dev_run", [["--trainer.fast_dev_run", "1"], []])
def test_missing_smnist_files_are_named_before_anything_is_written(tmp_path, capsys, fast_dev_run):
    args = ["fit", "--config", str(ROOT / "conf/experiment/smnist_gru.yaml")]
    args += ["--data.init_args.data_dir", str(tmp_path / "data"), *fast_dev_run]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--trainer.default_root_dir", str(tmp_path / "run")])
    message = str(exit_info.value.code)
    assert message.startswith("error: MNIST: 4 of 4 files are missing. Expected:\n")
    assert f"{tmp_path}/data/MNIST/raw/train-images-idx3-ubyte" in message
    assert "Traceback" not in capsys.readouterr().err
    assert files_under(tmp_path) == []  # no run folder: no config.yaml, no logger files


def test_a_nan_loss_at_the_first_step_claims_no_checkpoint(tmp_path, capsys):
    from tests.test_cli import nan_run

    message = one_line_error(nan_run(tmp_path, 0), capsys)
    assert message == (
        "error: training loss is nan at step 0 (epoch 0, batch 0); training stopped, "
        "no checkpoint was saved before it"
    )
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


def test_a_fit_into_a_folder_holding_a_run_is_refused(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.csv").write_text("epoch,step\n0,3\n")
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"old")
    before = files_under(tmp_path)
    assert one_line_error(fit(tmp_path), capsys) == (
        f"error: {tmp_path} already holds a run (metrics.csv, checkpoints/last.ckpt); resume it "
        "with --ckpt_path last, or start a new one elsewhere with --trainer.default_root_dir DIR"
    )
    assert files_under(tmp_path) == before
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == b"old"


def test_resuming_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    message = one_line_error(fit(tmp_path / "run", "--ckpt_path", "last"), capsys)
    assert message == (
        f"error: --ckpt_path last: no readable checkpoint to resume in {tmp_path}/run/checkpoints "
        "(leave out --ckpt_path to start a new run)"
    )
    assert not (tmp_path / "run").exists()


def test_a_printed_config_holds_no_derived_path_nor_terminal_setting(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([*fit(tmp_path / "run"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["checkpoint"]["dirpath"] is None
    assert config["trainer"]["enable_progress_bar"] is None
    assert config["threads"] is None  # torch's count, recorded in config.yaml when the run starts
    assert not (tmp_path / "run").exists()


# sweep files


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_sweep(tmp_path: Path, **changes) -> dict:
    """A one-point grid over the tiny copy-task wRNN; `changes` replace its keys."""
    data = {
        "study": f"bad-input-{os.getpid()}-{tmp_path.name}",
        "configs": [str(ROOT / "conf/data/copy.yaml"), str(ROOT / "conf/model/wrnn.yaml")],
        "args": [
            "--model.init_args.layer.init_args.n_hid=8", "--model.init_args.layer.init_args.n_ch=2",
            "--data.delay=2", "--data.batch_size=8", "--data.train_batches=3",
            "--data.val_size=16", "--data.test_size=16", "--trainer.max_epochs=1",
        ],
        "space": {"model.init_args.layer.init_args.recurrent_init": {"choices": ["shift"]}},
        "metric": {"name": "val/loss", "direction": "minimize"},
        "root": str(tmp_path / "runs"),
    }  # fmt: skip
    return {**data, **changes}


def sweep_error(tmp_path: Path, command: str, data: dict | str, capsys) -> str:
    """The one-line error of `sweep COMMAND` on a sweep file; nothing may appear under tmp_path."""
    path = write(tmp_path / "sweep.yaml", data)
    message = one_line_error(["sweep", command, str(path)], capsys)
    assert files_under(tmp_path) == ["sweep.yaml"]  # no runs/, no journal
    return message.removeprefix(f"error: {path}: ")


def test_an_extends_cycle_is_named(tmp_path, capsys):
    write(tmp_path / "b.yaml", {"extends": "sweep.yaml"})
    path = write(tmp_path / "sweep.yaml", {"extends": "b.yaml", "study": "x"})
    assert one_line_error(["sweep", "run", str(path)], capsys) == (
        f"error: {path}: extends: a cycle ({path} -> {tmp_path}/b.yaml -> {path})"
    )


def test_a_yaml_syntax_error_is_named(tmp_path, capsys):
    message = sweep_error(tmp_path, "run", "study: [x\nmetric: 3\n", capsys)
    expected = "line 2, column 7: expected ',' or ']', but got ':'"
    assert message == f"not valid YAML: {expected}"


def test_a_postgres_dialect_is_refused_with_the_password_masked(tmp_path, capsys):
    data = tiny_sweep(tmp_path, storage="postgres://wave:s3cret@127.0.0.1:5432/postgres")
    assert sweep_error(tmp_path, "run", data, capsys) == (
        "storage: postgres://wave:***@127.0.0.1:5432/postgres: no SQLAlchemy dialect 'postgres' "
        "(NoSuchModuleError); use e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB or "
        "sqlite:///FILE"
    )


def test_no_database_server_is_one_line_with_the_password_masked(tmp_path, capsys):
    url = "postgresql+psycopg2://wave:s3cret@127.0.0.1:1/postgres"
    for command in ("run", "status"):
        assert sweep_error(tmp_path, command, tiny_sweep(tmp_path, storage=url), capsys) == (
            "storage: cannot use postgresql+psycopg2://wave:***@127.0.0.1:1/postgres: connection "
            'to server at "127.0.0.1", port 1 failed: Connection refused'
        )


@pytest.mark.postgres
@pytest.mark.skipif(POSTGRES is None, reason="needs WAVE_LIGHTNING_TEST_POSTGRES_URL")
def test_a_wrong_password_and_a_missing_study_never_show_the_password(tmp_path, capsys):
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES)
    wrong = url.set(password="not-the-password").render_as_string(hide_password=False)
    message = sweep_error(tmp_path, "run", tiny_sweep(tmp_path, storage=wrong), capsys)
    shown = url.render_as_string(hide_password=True)
    assert message == (
        f'storage: cannot use {shown}: connection to server at "{url.host}", port {url.port} '
        f'failed: FATAL:  password authentication failed for user "{url.username}"'
    )
    data = tiny_sweep(tmp_path, storage=url.render_as_string(hide_password=False))
    missing = one_line_error(["sweep", "status", str(write(tmp_path / "s.yaml", data))], capsys)
    assert missing == f"error: no study {data['study']!r} in {shown}; start it with `sweep run`"
    assert f":{url.password}@" not in missing


@pytest.mark.parametrize("command", ["status", "report", "dashboard"])
def test_reading_a_journal_sweep_never_run_creates_nothing(tmp_path, capsys, command):
    data = tiny_sweep(tmp_path)
    path = write(tmp_path / "sweep.yaml", data)
    message = one_line_error(["sweep", command, str(path)], capsys)
    journal = Path(data["root"]) / "journal.log"
    assert message == f"error: no study {data['study']!r} in {journal}; start it with `sweep run`"
    assert files_under(tmp_path) == ["sweep.yaml"]  # no run folder, no empty journal.log


# the space, checked against fit's config schema before the first trial


@pytest.mark.parametrize(
    "space, message",
    [
        (
            {"model.init_args.layer.init_args.n_chan": {"choices": [1, 2]}},
            "space.model.init_args.layer.init_args.n_chan: fit refuses "
            "model.init_args.layer.init_args.n_chan=1: WaveRNN: Option 'n_chan' is not accepted "
            "(did you mean n_ch?); WaveRNN takes input_size, n_hid, n_ch, ",
        ),
        (
            {"model.init_args.layer.init_args.n_ch": {"choices": [1, "two"]}},
            "space.model.init_args.layer.init_args.n_ch: fit refuses "
            "model.init_args.layer.init_args.n_ch='two': WaveRNN: n_ch: Expected a <class 'int'>. "
            "Got value: two",
        ),
        (
            {"model.init_args.layer.init_args.recurrent_init": {"choices": ["shift", "shfit"]}},
            "space.model.init_args.layer.init_args.recurrent_init: fit refuses "
            "model.init_args.layer.init_args.recurrent_init='shfit': WaveRNN: "
            "recurrent_init='shfit' is not allowed; choose one of shift, identity, random",
        ),
        (
            {
                "layer": {"configs": {"wave": str(ROOT / "conf/model/wrnn.yaml")}},
                "model.init_args.layer.init_args.n_hid": {"choices": [8, 16]},
                "optimizer.init_args.lr": {"choices": [0.01, -1.0]},
            },
            "space.optimizer.init_args.lr: fit refuses layer='wave', "
            "model.init_args.layer.init_args.n_hid=8, optimizer.init_args.lr=-1.0: "
            "Adam: Invalid learning rate: -1.0",
        ),
    ],
    ids=["unknown-key", "wrong-type", "misspelt-choice", "bad-lr-at-one-point"],
)
def test_a_bad_space_is_refused_before_any_trial(tmp_path, capsys, space, message):
    for command in ("run", "worker"):
        data = tiny_sweep(tmp_path, space=space)
        assert sweep_error(tmp_path, command, data, capsys).startswith(message)


def test_a_search_is_checked_at_the_ends_of_its_ranges(tmp_path, capsys):
    space = {"model.init_args.layer.init_args.n_hid": {"int": [-4, 8]}}
    data = tiny_sweep(tmp_path, space=space, sampler="tpe", trials=2)
    data["args"] = data["args"][1:]  # n_hid comes from the space
    assert sweep_error(tmp_path, "run", data, capsys) == (
        "space.model.init_args.layer.init_args.n_hid: fit refuses "
        "model.init_args.layer.init_args.n_hid=-4: WaveRNN: n_hid must be a positive integer, "
        "got -4"
    )


def test_a_bad_override_is_refused_before_a_derived_sweep_is_written(tmp_path, capsys):
    path = write(tmp_path / "sweep.yaml", tiny_sweep(tmp_path))
    message = one_line_error(["sweep", "run", str(path), "--", "--trainer.max_stepz=5"], capsys)
    assert message.startswith(f"error: {path}: args: fit refuses ")
    assert message.endswith(
        "--trainer.max_stepz is not an option (did you mean --trainer.max_steps?); see --help"
    )
    assert files_under(tmp_path) == ["sweep.yaml"]


def test_overrides_derive_a_study_with_its_own_name_root_and_fingerprint(tmp_path):
    path = write(tmp_path / "sweep.yaml", tiny_sweep(tmp_path))
    base = load_sweep(path)
    derived = load_sweep(path, ["--trainer.max_steps=50"])
    again = load_sweep(path, ["--trainer.max_steps=50"])
    other = load_sweep(path, ["--trainer.max_steps=60"])
    assert derived.study.startswith(f"{base.study}-") and len(derived.study) == len(base.study) + 9
    assert (again.study, again.root, again.fingerprint) == (
        derived.study,
        derived.root,
        derived.fingerprint,
    )
    assert other.study != derived.study and derived.fingerprint != base.fingerprint
    assert derived.root == Path(f"{base.root}-{derived.study.rsplit('-', 1)[1]}")
    assert derived.args == [*base.args, "--trainer.max_steps=50"]
    assert derived.path == derived.root / "sweep.yaml" and derived.source == path


# saved configs reproduce their run


def val_losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(row["val/loss"]) for row in csv.DictReader(handle) if row.get("val/loss")]


def run_cli(args: list[str], cwd: Path, threads: str | None) -> subprocess.CompletedProcess:
    """`wave-lightning ARGS` in a child process with OMP_NUM_THREADS=`threads` (unset if None)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {"PYTHONPATH": str(ROOT)} | ({"OMP_NUM_THREADS": threads} if threads else {})
    command = [sys.executable, "-m", "wave_lightning", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_derived_sweeps_best_yaml_reruns_its_trial_to_the_same_metric(tmp_path):
    path = write(tmp_path / "sweep.yaml", tiny_sweep(tmp_path, seeds=[0, 1]))
    overrides = ["--", "--trainer.max_epochs=2"]
    ran = run_cli(["sweep", "run", str(path), "--threads", "1", *overrides], tmp_path, None)
    assert ran.returncode == 0, ran.stderr
    derived = load_sweep(path, overrides[1:])
    assert f"sweep {derived.study}: {path} with --trainer.max_epochs=2; root {derived.root}" in (
        ran.stdout
    )
    status = run_cli(["sweep", "status", str(path), *overrides], tmp_path, None)
    assert status.returncode == 0 and "COMPLETE" in status.stdout, status.stdout + status.stderr
    report = run_cli(["sweep", "report", str(path), *overrides], tmp_path, None)
    assert report.returncode == 0, report.stderr
    best = yaml.safe_load((derived.root / "report" / "best.yaml").read_text())
    assert best["threads"] == 1 and best["checkpoint"]["dirpath"] is None
    assert best["trainer"]["enable_progress_bar"] is None and best["trainer"]["max_epochs"] == 2
    best_trial = load_study(derived, open_storage(derived)).best_trial
    trial = derived.root / best_trial.user_attrs["run_dir"]
    before = (trial / "checkpoints" / "last.ckpt").read_bytes()
    rerun = ["fit", "--config", str(derived.root / "report" / "best.yaml")]
    rerun += ["--trainer.default_root_dir", str(tmp_path / "rerun")]
    again = run_cli(rerun, tmp_path, None)  # torch's own thread count here: 2 or more cores
    assert again.returncode == 0, again.stderr
    assert val_losses(tmp_path / "rerun") == val_losses(trial) and len(val_losses(trial)) == 2
    assert (trial / "checkpoints" / "last.ckpt").read_bytes() == before  # the trial is untouched
