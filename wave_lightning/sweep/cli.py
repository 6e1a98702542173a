"""`wave-lightning sweep run|worker|status|report|dashboard FILE [-- FIT ARGS]`: Optuna sweeps over
LightningCLI runs. `fit` arguments after `--` are appended to the sweep's args: a derived sweep
with its own study and root (named `<study>-<hash of the arguments>`); give `status` and
`report` the same arguments to find it."""

import argparse
import sys
import warnings
from pathlib import Path

import optuna
from sqlalchemy.exc import SQLAlchemyError

from .claims import recover_dead_trials
from .dashboard import DEFAULT_HOST, DEFAULT_PORT, serve
from .spec import Sweep, SweepFileError, load_sweep, shown_url, write_derived
from .storage import StudyMismatchError, load_study, open_storage, open_study, read_study


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="wave-lightning sweep", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the sweep with N workers on this machine")
    run.add_argument("file", type=Path, help="the sweep file (sweeps/*.yaml)")
    run.add_argument("--workers", type=int, help="worker processes (default: one per GPU, or 1)")
    run.add_argument("--gpus", help="comma-separated GPU ids, one per worker (default: CPU)")
    run.add_argument("--threads", type=int, help="CPU threads per trial (default: cores/workers)")
    worker = commands.add_parser("worker", help="run one worker (SLURM array jobs, other hosts)")
    worker.add_argument("file", type=Path)
    worker.add_argument("--threads", type=int, help="CPU threads per trial (default: torch's)")
    status = commands.add_parser("status", help="print the trials by state and the best so far")
    status.add_argument("file", type=Path)
    report = commands.add_parser("report", help="write CSV, ablation table, best config, plots")
    report.add_argument("file", type=Path)
    report.add_argument("--out", type=Path, help="output folder (default: <root>/report)")
    add_dashboard_parser(commands)
    return main


def add_dashboard_parser(commands: argparse._SubParsersAction) -> None:
    """`sweep dashboard FILE [--host H] [--port P]`: optuna-dashboard (the `dashboard` extra)."""
    dashboard = commands.add_parser("dashboard", help="serve optuna-dashboard on the storage")
    dashboard.add_argument("file", type=Path)
    dashboard.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """The sweep command's own arguments, and the `fit` overrides after `--`."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def checked_sweep(file: Path, overrides: list[str]) -> Sweep:
    """The sweep whose every trial configuration fit accepts; a derived sweep file is written
    (and its name printed) only once that holds."""
    from .validate import check_points

    sweep = load_sweep(file, overrides)
    check_points(sweep)
    if sweep.source is not None:
        write_derived(sweep, file)
        print(f"sweep {sweep.study}: {file} with {' '.join(overrides)}; root {sweep.root}")
    return sweep


def storage_failure(sweep: Sweep, error: SQLAlchemyError) -> SweepFileError:
    """A storage that cannot be reached, as a one-line error with its password masked."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    file = sweep.source or sweep.path
    return SweepFileError(f"{file}: storage: cannot use {shown_url(sweep.storage)}: {reason}")


def masked(text: str, sweep: Sweep | None) -> str:
    """`text` with the sweep's storage password masked."""
    if sweep is None or sweep.storage is None:
        return text
    return text.replace(sweep.storage, shown_url(sweep.storage))


def run(args: argparse.Namespace, sweep: Sweep) -> int:
    """Start the workers unless the sweep is already finished."""
    from .worker import is_finished, launch, summary_text

    storage = open_storage(sweep, first_call_waits=False)
    study = open_study(sweep, storage)
    for number in recover_dead_trials(study, sweep):
        print(f"trial {number}: its worker is gone; queued again to resume", flush=True)
    if is_finished(study, sweep):
        print(f"sweep {sweep.study} is finished ({len(study.trials)} trials); nothing to run")
        return 0
    gpus = args.gpus.split(",") if args.gpus else None
    workers = args.workers or (len(gpus) if gpus else 1)
    if gpus is not None and len(gpus) != workers:
        sys.exit(f"error: --workers {workers} needs one GPU each, got --gpus {args.gpus}")
    code = launch(sweep, workers, gpus, args.threads)
    print(summary_text(load_study(sweep, storage), sweep), flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    """Entry point of `wave-lightning sweep ...`."""
    own, overrides = split_overrides(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_args(own)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
    sweep = None
    try:
        if args.command in ("run", "worker"):
            sweep = checked_sweep(args.file, overrides)
        else:
            sweep = load_sweep(args.file, overrides)
        try:
            command(args, sweep)
        except SQLAlchemyError as error:
            raise storage_failure(sweep, error) from error
    except (SweepFileError, StudyMismatchError) as error:
        raise type(error)(masked(str(error), sweep)) from error


def command(args: argparse.Namespace, sweep: Sweep) -> None:
    """Run the sweep subcommand on a checked sweep."""
    if args.command == "run":
        sys.exit(run(args, sweep))
    if args.command == "worker":
        from .worker import work

        sys.exit(work(sweep, args.threads))
    study = read_study(sweep)
    if args.command == "status":
        from .report import status_text

        print(masked(status_text(study, sweep), sweep))
    elif args.command == "dashboard":
        serve(study, sweep, args.host, args.port)
    else:
        from .report import write_report

        for path in write_report(study, sweep, args.out or sweep.root / "report"):
            print(path)
