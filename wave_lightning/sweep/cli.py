"""`wave-lightning sweep run|worker|status|report FILE`: Optuna sweeps over LightningCLI runs."""

import argparse
import sys
import warnings
from pathlib import Path

import optuna

from .dashboard import DEFAULT_HOST, DEFAULT_PORT, serve
from .spec import SweepFileError, load_sweep
from .storage import StudyMismatchError, load_study, open_storage, open_study, recover_dead_trials


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


def run(args: argparse.Namespace) -> int:
    """Start the workers unless the sweep is already finished."""
    from .worker import is_finished, launch

    sweep = load_sweep(args.file)
    study = open_study(sweep, open_storage(sweep))
    for number in recover_dead_trials(study, sweep):
        print(f"trial {number}: its worker is gone; queued again to resume", flush=True)
    if is_finished(study, sweep):
        print(f"sweep {sweep.study} is finished ({len(study.trials)} trials); nothing to run")
        return 0
    gpus = args.gpus.split(",") if args.gpus else None
    workers = args.workers or (len(gpus) if gpus else 1)
    if gpus is not None and len(gpus) != workers:
        sys.exit(f"error: --workers {workers} needs one GPU each, got --gpus {args.gpus}")
    return launch(sweep, workers, gpus, args.threads)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `wave-lightning sweep ...`."""
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
    try:
        if args.command == "run":
            sys.exit(run(args))
        sweep = load_sweep(args.file)
        if args.command == "worker":
            from .worker import work

            work(sweep, args.threads)
            return
        study = load_study(sweep, open_storage(sweep))
        if args.command == "status":
            from .report import status_text

            print(status_text(study, sweep))
        elif args.command == "dashboard":
            serve(study, sweep, args.host, args.port)
        else:
            from .report import write_report

            for path in write_report(study, sweep, args.out or sweep.root / "report"):
                print(path)
    except (SweepFileError, StudyMismatchError) as error:
        sys.exit(f"error: {error}")
