"""A run's folder: derived from the config at run time, and never shared by two runs.

Derived paths (the run folder when none is given, its checkpoints/) are decided when a run
starts, never written into its saved config, so a config reused elsewhere cannot point back
into the old run. A fit into a folder that already holds a run (metrics.csv or a checkpoint) is
refused unless it resumes that run (`--ckpt_path last`), as Lightning's own loggers would
otherwise append a restarted history and overwrite last.ckpt.
"""

from pathlib import Path


class RunFolderError(RuntimeError):
    """A fit would write into the folder of another run."""


def default_run_dir(data: str, layer: str) -> str:
    """runs/<Data>-<Layer>: where a run goes when trainer.default_root_dir is not given."""
    return str(Path("runs") / f"{data}-{layer}")


def checkpoint_dir(run_dir: str | Path) -> str:
    """The run's checkpoints/ folder."""
    return str(Path(run_dir) / "checkpoints")


def previous_run(run_dir: str | Path, checkpoints: str | Path) -> list[str]:
    """What a run left in `run_dir`: metrics.csv and checkpoint files, as relative names."""
    run_dir = Path(run_dir)
    found = [run_dir / "metrics.csv"] if (run_dir / "metrics.csv").is_file() else []
    found += sorted(Path(checkpoints).glob("*.ckpt")) + sorted(run_dir.glob("hpc_ckpt_*.ckpt"))
    return [
        str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
        for path in found
    ]


def check_fresh(run_dir: str | Path, checkpoints: str | Path) -> None:
    """Refuse to start a new run where another one lives."""
    left = previous_run(run_dir, checkpoints)
    if left:
        shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
        raise RunFolderError(
            f"{run_dir} already holds a run ({shown}); resume it with --ckpt_path last, "
            "or start a new one elsewhere with --trainer.default_root_dir DIR"
        )
