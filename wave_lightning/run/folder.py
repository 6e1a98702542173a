"""A run's folder: what it holds, named in one place, and never shared by two runs.

A run lives in one folder: config.yaml, metrics.csv, tensorboard/, checkpoints/ (best, last.ckpt,
preempted.ckpt), and in runs of earlier versions Lightning's SLURM hpc_ckpt_N.ckpt (read, no
longer written). Every reader and writer of a run (fit, the sweep's objective, analysis, the
report scripts) finds these files through `RunFolder`.

Derived paths (the run folder when none is given, its checkpoints/) are decided when a run
starts, never written into its saved config, so a config reused elsewhere cannot point back
into the old run. A fit into a folder that already holds a run (metrics.csv or a checkpoint) is
refused unless it resumes that run (`--ckpt_path last`), as Lightning's own loggers would
otherwise append a restarted history and overwrite last.ckpt.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import first_readable, newest_first
from .errors import UserError
from .preemption import PREEMPTED

CHECKPOINTS = "checkpoints"


class RunFolderError(UserError, RuntimeError):
    """A fit would write into the folder of another run."""


@dataclass(frozen=True)
class RunFolder:
    """The folder of one run; `checkpoint_dir` when a config moved its checkpoints elsewhere."""

    path: Path
    checkpoint_dir: Path | None = None

    def __init__(self, path: str | Path, checkpoint_dir: str | Path | None = None) -> None:
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "checkpoint_dir", Path(checkpoint_dir) if checkpoint_dir else None)

    @classmethod
    def default(cls, data: str, layer: str) -> "RunFolder":
        """runs/<Data>-<Layer>: where a run goes when trainer.default_root_dir is not given."""
        return cls(Path("runs") / f"{data}-{layer}")

    @classmethod
    def of_checkpoint(cls, ckpt: str | Path) -> "RunFolder":
        """The run that wrote `ckpt`, a file in its checkpoints/ folder."""
        return cls(Path(ckpt).resolve().parent.parent)

    @property
    def checkpoints(self) -> Path:
        """The checkpoints/ folder (or the one the config named)."""
        return self.checkpoint_dir or self.path / CHECKPOINTS

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def preempted(self) -> Path:
        return self.checkpoints / PREEMPTED

    def best_checkpoints(self) -> list[Path]:
        """The monitored (best-model) checkpoints, epoch=E-step=S.ckpt, sorted by name."""
        return sorted(self.checkpoints.glob("epoch=*.ckpt"))

    def metric_rows(self) -> list[dict[str, str]]:
        """The rows of metrics.csv (empty when the run logged nothing yet)."""
        if not self.metrics.is_file():
            return []
        with open(self.metrics, newline="") as handle:
            return list(csv.DictReader(handle))

    def newest_checkpoint(self) -> str | None:
        """What `--ckpt_path last` resumes from: the newest readable checkpoint; None when none.

        The newest of last*.ckpt and preempted.ckpt in checkpoints/ and Lightning's SLURM
        hpc_ckpt_*.ckpt in the run folder; when none of them loads, the newest other checkpoint
        (a best-model one, older). Damaged files are skipped with a warning.
        """
        resumable = [*self.checkpoints.glob("last*.ckpt"), self.preempted]
        resumable += self.path.glob("hpc_ckpt_*.ckpt")
        older = [path for path in self.checkpoints.glob("*.ckpt") if path not in resumable]
        return first_readable([*newest_first(resumable), *newest_first(older)])

    def previous_run(self) -> list[str]:
        """What a run left here: metrics.csv and checkpoint files, as relative names."""
        found = [self.metrics] if self.metrics.is_file() else []
        found += sorted(self.checkpoints.glob("*.ckpt")) + sorted(self.path.glob("hpc_ckpt_*.ckpt"))
        return [
            str(path.relative_to(self.path)) if path.is_relative_to(self.path) else str(path)
            for path in found
        ]

    def check_fresh(self) -> None:
        """Refuse to start a new run where another one lives."""
        left = self.previous_run()
        if left:
            shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
            raise RunFolderError(
                f"{self.path} already holds a run ({shown}); resume it with --ckpt_path last, "
                "or start a new one elsewhere with --trainer.default_root_dir DIR"
            )
