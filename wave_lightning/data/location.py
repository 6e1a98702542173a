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
    """Run torchvision's `download`, turning any network or checksum failure into one message."""
    try:
        download()
    except (OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataDownloadError(
            f"{name}: download into {folder} failed ({reason}). If this machine is offline, "
            f"fetch the files on one with internet access (the same command with "
            f"--data.init_args.download true) and copy the folder here, or point "
            f"--data.init_args.data_dir / ${DATA_DIR_ENV} at a copy."
        ) from error
