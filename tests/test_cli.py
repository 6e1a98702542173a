"""The wave-lightning command: configs, print_config round trip, resume, errors, NaN guard."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import ROOT, cli, tiny_copy_args
from wave_lightning.cli import main

# the synthetic-task experiments; the image ones run on tiny files in test_image_experiments.py
EXPERIMENTS = sorted(
    p for p in (ROOT / "conf" / "experiment").glob("*.yaml") if p.stem.startswith(("copy", "add"))
)
TINY = [
    "--data.batch_size", "8", "--data.train_batches", "3",
    "--data.val_size", "16", "--data.test_size", "16",
]  # fmt: skip
TINY_WAVE = [*tiny_copy_args(delay=2), *TINY]


def test_there_is_an_experiment_per_table_row():
    names = {p.stem for p in EXPERIMENTS}
    copy_rows = {
        "copy_wrnn",
        "copy_wrnn_no_v_init",
        "copy_wrnn_no_shift_init",
        "copy_wrnn_no_init",
        "copy_irnn",
        "copy_irnn_sigma_init",
        "copy_irnn_sigma_v_init",
    }
    assert copy_rows | {"adding_wrnn", "adding_irnn"} <= names


def fast_dev_run(config: Path, root: Path) -> None:
    """One training, validation and test batch of `config`, run in `root`."""
    main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1",
          "--trainer.default_root_dir", str(root), "--data.batch_size", "4"])  # fmt: skip


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_runs_a_fast_dev_run(config, tmp_path):
    fast_dev_run(config, tmp_path)


def print_config(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def test_print_config_round_trips(tmp_path, capsys):
    config = ROOT / "conf/experiment/copy_wrnn.yaml"
    printed = print_config(["--config", str(config), "--model.layer.init_args.n_ch", "3"], capsys)
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    assert print_config(["--config", str(saved)], capsys) == printed
    parsed = yaml.safe_load(printed)
    assert parsed["model"]["init_args"]["layer"]["init_args"]["n_ch"] == 3
    assert parsed["data"]["init_args"]["delay"] == 30
    fast_dev_run(saved, tmp_path)


@pytest.mark.parametrize(
    ("bad", "line"),
    [
        (
            ["--model.layer.init_args.n_chan", "3"],
            "error: WaveRNN: Option 'n_chan' is not accepted (did you mean n_ch?); WaveRNN takes "
            "input_size, n_hid, n_ch, kernel_size,",
        ),
        (
            ["--data.init_args.delai", "3"],
            "error: CopyTask: Option 'delai' is not accepted (did you mean delay?); CopyTask "
            "takes delay, memory_length,",
        ),
        (
            ["--trainer.max_stepz", "3"],
            "error: --trainer.max_stepz is not an option (did you mean --trainer.max_steps?); "
            "see --help",
        ),
    ],
    ids=["layer", "data", "trainer"],
)
def test_an_unknown_option_is_one_line_naming_the_closest_valid_one(bad, line, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY_WAVE, *bad])
    message = str(exit_info.value.code)
    assert message.startswith(line) and "\n" not in message, message
    assert capsys.readouterr().out == ""  # no usage dump


def test_unknown_key_in_a_config_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  init_args:\n    layer:\n      init_args:\n        ringz: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY_WAVE, "--config", str(config)])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "ringz" in message and "\n" not in message


def test_bad_layer_argument_value_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                *TINY_WAVE,
                "--model.layer.init_args.recurrent_init",
                "spiral",
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
            ]
        )
    assert exit_info.value.code == (
        "error: WaveRNN: recurrent_init='spiral' is not allowed; "
        "choose one of shift, identity, random"
    )
    assert not (tmp_path / "run").exists()


def test_a_run_writes_config_logs_and_checkpoints(tmp_path, capsys):
    main(
        [
            "fit",
            *TINY_WAVE,
            "--trainer.max_epochs",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.log_every_n_steps",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert f"checkpoints: {tmp_path / 'checkpoints'} (last: {tmp_path}/checkpoints/last.ckpt" in out
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "checkpoints/last.ckpt").exists()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/loss", "val/acc", "test/acc", "test/loss"} <= set(header)
    assert "epoch 1 step 6:" in out  # plain per-epoch lines when not on a terminal
    hparams = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=False)["hyper_parameters"]
    assert hparams["layer"]["init_args"]["input_size"] == 10  # linked from the data
    assert (hparams["output_size"], hparams["seq_len"]) == (10, 22)


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_killed_run_resumed_from_last_ckpt_ends_with_the_same_weights(tmp_path):
    args = [*TINY_WAVE, "--trainer.max_epochs", "4", "--test_after_fit", "false"]
    full = cli([*args, "--trainer.default_root_dir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr
    crash = [*args, "--trainer.default_root_dir", str(tmp_path / "crash")]
    killed = cli(
        [*crash, "--trainer.callbacks+=tests.helpers.KillAtEpoch", "--trainer.callbacks.epoch", "2"]
    )
    assert killed.returncode == -9
    assert torch.load(tmp_path / "crash/checkpoints/last.ckpt", weights_only=False)["epoch"] == 1
    resumed = cli([*crash, "--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    with open(tmp_path / "crash/metrics.csv", newline="") as file:
        val_steps = [int(row["step"]) for row in csv.DictReader(file) if row["val/loss"]]
    assert val_steps == [2, 5, 8, 11]  # the resumed run continued the killed run's log
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "crash")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resuming_a_finished_run_says_it_had_finished(tmp_path):
    args = [*TINY_WAVE, "--trainer.max_steps", "4", "--trainer.default_root_dir", str(tmp_path)]
    assert cli(args).returncode == 0
    again = cli([*args, "--ckpt_path", "last"])
    assert again.returncode == 0, again.stderr
    line = (
        f"{tmp_path} already finished: last.ckpt is at step 4 of max_steps 4; nothing is "
        "trained, its best checkpoint is tested again"
    )
    assert line in again.stdout.splitlines()


def nan_run(root: Path, nan_from_batch: int) -> list[str]:
    """fit arguments of an adding-task run whose inputs turn NaN at batch `nan_from_batch`."""
    return [
        "fit",
        "--data",
        "tests.helpers.NaNAddingTask",
        "--data.nan_from_batch",
        str(nan_from_batch),
        "--data.seq_len",
        "6",
        *TINY,
        "--model",
        "wave_lightning.tasks.Regression",
        "--model.layer",
        "wave_lightning.nn.WaveRNN",
        "--model.layer.n_hid",
        "4",
        "--trainer.max_epochs",
        "3",
        "--trainer.default_root_dir",
        str(root),
    ]


def test_a_nan_loss_stops_training_and_keeps_the_good_checkpoint(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(nan_run(tmp_path, 4))
    assert exit_info.value.code == (
        "error: training loss is nan at step 4 (epoch 1, batch 1); training stopped, "
        f"the last good checkpoint is kept: {tmp_path}/checkpoints/last.ckpt"
    )
    last = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=False)
    assert last["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_last_ckpt_is_the_last_epoch_even_when_the_metric_stops_improving(tmp_path):
    main(
        [
            "fit",
            *TINY_WAVE,
            "--optimizer.lr",
            "0",
            "--trainer.max_epochs",
            "3",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--test_after_fit",
            "false",
        ]
    )
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch=0-step=3.ckpt", "last.ckpt"]  # best: the first (nothing improves)
    last = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 9)


QUICK = {  # commands that answer at once: they must not import torch or Lightning
    "top-level help": ["--help"],
    "sweep help": ["sweep", "--help"],
    "a missing sweep file": ["sweep", "status", "missing.yaml"],
    "a broken sweep file": ["sweep", "status", "broken.yaml"],
}


@pytest.mark.parametrize("what", QUICK)
def test_help_and_sweep_file_errors_import_neither_torch_nor_lightning(tmp_path, what):
    (tmp_path / "broken.yaml").write_text("study: [unclosed\n")
    code = (
        "import sys\nfrom wave_lightning.cli import main\n"
        f"try:\n    main({QUICK[what]!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
