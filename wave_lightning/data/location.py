"""Where data sets live on disk, and the clear errors for missing, corrupt or unfetchable files."""

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..run.errors import UserError

DATA_DIR_ENV = "WAVE_LIGHTNING_DATA_DIR"


class DataMissingError(UserError, FileNotFoundError):
    """Some files of a data set are not where the DataModule looks for them."""


class DataCorruptError(UserError, ValueError):
    """A data file exists but cannot be read as the data set it should hold."""


class DataDownloadError(UserError, RuntimeError):
    """download: true was asked for but the files could not be fetched (offline, say)."""


def default_data_dir() -> Path:
    """$WAVE_LIGHTNING_DATA_DIR, else <user cache>/wave_lightning/data."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "wave_lightning" / "data"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The folder a DataModule reads from: `data_dir` when given, else the default."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def require_files(name: str, folder: Path, files: Iterable[str], how_to_fetch: str) -> None:
    """Raise DataMissingError listing the expected files under `folder` unless all exist."""
    expected = [folder / file for file in files]
    missing = [path for path in expected if not path.is_file()]
    if missing:
        listing = "\n".join(f"  {p}{'' if p in missing else '  (found)'}" for p in expected)
        raise DataMissingError(
            f"{name}: {len(missing)} of {len(expected)} files are missing. Expected:\n{listing}\n"
            f"{how_to_fetch}\nThe data folder is `data_dir` (--data.init_args.data_dir), "
            f"default ${DATA_DIR_ENV} or {default_data_dir()}."
        )


def fetch(name: str, folder: Path, download: Callable[[], object]) -> None:
    """Run torchvision's `download`, turning any network or checksum failure into one message
    with its cause; what the failed attempt created under `folder` (empty folders, partial
    files) is removed, what was there before is kept."""
    before = set(folder.rglob("*")) if folder.exists() else None
    try:
        download()
    except (OSError, RuntimeError) as error:
        remove_new(folder, before)
        raise DataDownloadError(
            f"{name}: download into {folder} failed ({cause(error)}). If this machine is offline, "
            f"fetch the files on one with internet access (the same command with "
            f"--data.init_args.download true) and copy the folder here, or point "
            f"--data.init_args.data_dir / ${DATA_DIR_ENV} at a copy."
        ) from error


def cause(error: BaseException) -> str:
    """An error's message on one line: torchvision puts the cause of a failed download (each
    mirror and what it answered) on the lines after "Error downloading FILE:"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__


def remove_new(folder: Path, before: set[Path] | None) -> None:
    """Delete what appeared under `folder` since `before` (None: the folder did not exist)."""
    if not folder.exists():
        return
    for path in sorted(set(folder.rglob("*")) - (before or set()), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    if before is None:
        folder.rmdir()
