"""Reading checkpoints safely: weights-only loads, one-line errors, the newest readable one.

A checkpoint is loaded with `torch.load(weights_only=True)`: only tensors, numbers, strings and
plain containers (dict, list, tuple, OrderedDict, Counter) are unpickled, so a file from
someone else cannot run code. That is all a checkpoint of this package holds (model, optimizer
and scheduler states, loop progress, callback and data-module states, hyper-parameters as plain
dicts; tests/test_checkpoints.py checks it on a real one), so no extra class is allow-listed.
"""

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import UserError


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, damaged, or holds more than plain data."""


def refusal(path: Path, error: Exception) -> str:
    """The one-line reason why torch could not load `path` weights-only."""
    text = str(error)
    unsafe = re.search(r"GLOBAL (\S+)", text)
    if unsafe:
        return (
            f"{path}: refused to load: it asks to import {unsafe.group(1)}, and checkpoints are "
            "loaded weights-only (tensors, numbers, strings, containers; see docs/trust.md)"
        )
    unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = unpickler.group(1) if unpickler else (lines[0] if lines else type(error).__name__)
    return f"{path}: not a readable checkpoint (damaged or truncated): {reason}"


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The Lightning checkpoint at `path`, loaded weights-only; CheckpointError if it is none."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint (no such file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(refusal(path, error)) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict in it)")
    return checkpoint


def readable(path: Path) -> bool:
    """Whether `path` loads as a checkpoint; warns, naming the file, when it does not."""
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        warnings.warn(f"skipping checkpoint: {error}", stacklevel=3)
        return False
    return True


def newest_first(paths: list[Path]) -> list[Path]:
    """The existing files among `paths`, newest first."""
    files = {path for path in paths if path.is_file()}
    return sorted(files, key=lambda path: path.stat().st_mtime_ns, reverse=True)


def first_readable(paths: list[Path]) -> str | None:
    """The first of `paths` that loads as a checkpoint (damaged ones warned of); None if none."""
    for path in paths:
        if readable(path):
            return str(path)
    return None
