"""`wave-lightning sweep dashboard FILE`: optuna-dashboard on a sweep's storage, in a browser."""

import importlib
import signal
import sys

import optuna

from .spec import Sweep
from .storage import storage_url

DEFAULT_HOST = "127.0.0.1"  # this machine only: the dashboard can edit and delete studies
DEFAULT_PORT = 8080
MISSING = (
    "error: `sweep dashboard` needs optuna-dashboard, which is not installed: "
    "pip install -e '.[dashboard]' in this repository (or pip install optuna-dashboard)"
)


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (kill, docker stop) stops the server as Ctrl-C does."""
    raise KeyboardInterrupt


def serve(study: optuna.Study, sweep: Sweep, host: str, port: int) -> None:
    """Serve optuna-dashboard on the study's storage at http://host:port/ until stopped."""
    try:
        dashboard = importlib.import_module("optuna_dashboard")
    except ImportError:
        sys.exit(MISSING)
    print(
        f"optuna-dashboard of study {sweep.study} ({storage_url(sweep)}) at "
        f"http://{host}:{port}/ (Ctrl-C stops it)",
        flush=True,
    )
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        dashboard.run_server(study._storage, host=host, port=port)  # returns on KeyboardInterrupt
    except OSError as error:  # a port in use, a host not of this machine
        sys.exit(f"error: optuna-dashboard cannot listen on {host}:{port}: {error.strerror}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("optuna-dashboard stopped", flush=True)
