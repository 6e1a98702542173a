"""Checkpoints load weights-only, damaged ones give one-line errors, resume skips them."""

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_copy_args
from wave_lightning.cli import main
from wave_lightning.run.checkpoints import CheckpointError, load_checkpoint
from wave_lightning.run.folder import RunFolder

TINY = ["--data.batch_size", "8", "--data.train_batches", "3", "--data.val_size", "16"]


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """The last.ckpt of a one-epoch tiny copy-task run of `wave-lightning fit`."""
    root = tmp_path_factory.mktemp("run")
    args = [*tiny_copy_args(delay=2), *TINY, "--trainer.max_epochs", "1"]
    main(["fit", *args, "--test_after_fit", "false", "--trainer.default_root_dir", str(root)])
    return root / "checkpoints" / "last.ckpt"


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_real_checkpoint_needs_nothing_beyond_plain_data(real_checkpoint):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(real_checkpoint) == []
    checkpoint = load_checkpoint(real_checkpoint)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 3)
    task = checkpoint["hyper_parameters"]["_class_path"]
    assert task == "wave_lightning.tasks.PerStepClassification"


def damage(path: Path, kind: str, real: bytes) -> None:
    """Write a damaged checkpoint of one kind at `path`."""
    contents = {"truncated": real[: len(real) // 2], "empty": b"", "garbage": b"garbage" * 100}
    path.write_bytes(contents[kind])


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", "not a readable checkpoint (damaged or truncated): "),
        ("empty", "empty file (0 bytes), not a checkpoint"),
        ("garbage", "not a readable checkpoint (damaged or truncated): Unsupported operand 103"),
    ],
)
def test_a_damaged_checkpoint_is_a_one_line_error(real_checkpoint, tmp_path, kind, reason):
    path = tmp_path / "last.ckpt"
    damage(path, kind, real_checkpoint.read_bytes())
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {reason}") and "\n" not in message


def test_a_missing_file_or_a_non_lightning_pickle_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"^.*/none.ckpt: no checkpoint \(no such file\)$"):
        load_checkpoint(tmp_path / "none.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    message = f"{tmp_path}/list.ckpt: not a Lightning checkpoint (no state_dict in it)"
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "list.ckpt")
    assert str(error.value) == message


def test_a_pickle_payload_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "epoch": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value) == (
        f"{path}: refused to load: it asks to import posix.system, and checkpoints are loaded "
        "weights-only (tensors, numbers, strings, containers; see docs/trust.md)"
    )
    assert not marker.exists()


def place(real: bytes, path: Path, age: int) -> None:
    """A copy of a real checkpoint at `path`, modified `age` seconds before the others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(real)
    os.utime(path, ns=(0, (100 - age) * 10**9))


def test_newest_checkpoint_is_what_last_resumes(real_checkpoint, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    assert RunFolder(tmp_path, checkpoints).newest_checkpoint() is None  # a first start
    real = real_checkpoint.read_bytes()
    names = ["checkpoints/epoch=0-step=3.ckpt", "checkpoints/last.ckpt", "hpc_ckpt_1.ckpt"]
    names += ["checkpoints/preempted.ckpt", "checkpoints/last-v1.ckpt"]
    for age, name in enumerate(names):  # the first name is the newest
        place(real, tmp_path / name, age)
    for name in names[1:]:  # a best-model checkpoint only when no resumable one is left
        assert RunFolder(tmp_path, checkpoints).newest_checkpoint() == str(tmp_path / name)
        (tmp_path / name).unlink()
    assert RunFolder(tmp_path, checkpoints).newest_checkpoint() == str(tmp_path / names[0])
    (tmp_path / names[0]).unlink()
    assert RunFolder(tmp_path, checkpoints).newest_checkpoint() is None


def test_newest_checkpoint_skips_damaged_files_with_a_warning(real_checkpoint, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    real = real_checkpoint.read_bytes()
    place(real, checkpoints / "epoch=0-step=3.ckpt", 3)
    place(real, checkpoints / "last-v1.ckpt", 2)
    place(real, checkpoints / "last.ckpt", 1)
    damage(checkpoints / "last.ckpt", "truncated", real)
    os.utime(checkpoints / "last.ckpt", ns=(0, 99 * 10**9))
    with pytest.warns(UserWarning, match=f"skipping checkpoint: {checkpoints}/last.ckpt: not a"):
        assert RunFolder(tmp_path, checkpoints).newest_checkpoint() == str(
            checkpoints / "last-v1.ckpt"
        )
    damage(checkpoints / "last-v1.ckpt", "empty", real)
    with pytest.warns(UserWarning, match="last-v1.ckpt: empty file"):
        assert RunFolder(tmp_path, checkpoints).newest_checkpoint() == str(
            checkpoints / "epoch=0-step=3.ckpt"
        )
    damage(checkpoints / "epoch=0-step=3.ckpt", "garbage", real)
    with pytest.warns(UserWarning, match="epoch=0-step=3.ckpt: not a readable"):
        assert RunFolder(tmp_path, checkpoints).newest_checkpoint() is None


def one_line_error(args: list[str], capsys) -> str:
    """The `error: ...` line `wave-lightning ARGS` exits with."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert capsys.readouterr().out == ""
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


@pytest.mark.parametrize("command", ["fit", "analyze"])
def test_a_damaged_or_poisoned_checkpoint_given_to_a_command_is_one_line(
    command, real_checkpoint, tmp_path, capsys
):
    damaged, poisoned = tmp_path / "damaged.ckpt", tmp_path / "poisoned.ckpt"
    marker = tmp_path / "pwned"
    damage(damaged, "garbage", real_checkpoint.read_bytes())
    torch.save({"state_dict": {}, "epoch": Payload(marker)}, poisoned)
    run = ["--trainer.default_root_dir", str(tmp_path / "run")]
    fit = ["fit", *tiny_copy_args(), *run, "--ckpt_path"]
    given = fit if command == "fit" else [command, "--ckpt"]
    reason = "not a readable checkpoint (damaged or truncated): Unsupported operand 103"
    assert one_line_error([*given, str(damaged)], capsys) == f"error: {damaged}: {reason}"
    refused = f"error: {poisoned}: refused to load: it asks to import posix.system"
    assert one_line_error([*given, str(poisoned)], capsys).startswith(refused)
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_resume_from_last_skips_a_damaged_last_ckpt(real_checkpoint, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    real = real_checkpoint.read_bytes()
    place(real, checkpoints / "preempted.ckpt", 2)  # older, readable: global step 3
    place(real, checkpoints / "last.ckpt", 1)
    damage(checkpoints / "last.ckpt", "truncated", real)
    args = [*tiny_copy_args(delay=2), *TINY, "--trainer.max_epochs", "2"]
    args += ["--test_after_fit", "false", "--trainer.default_root_dir", str(tmp_path)]
    with pytest.warns(UserWarning, match=f"skipping checkpoint: {checkpoints}/last.ckpt: not a"):
        main(["fit", *args, "--ckpt_path", "last"])
    resumed = load_checkpoint(checkpoints / "last.ckpt")
    assert (resumed["epoch"], resumed["global_step"]) == (1, 6)  # one more epoch after step 3
