"""`wave-lightning sweep dashboard FILE`: optuna-dashboard on a sweep's storage, in a browser."""

import importlib
import signal
import sys
import threading
from wsgiref.simple_server import make_server

import optuna

from .spec import Sweep
from .storage import storage_url

DEFAULT_HOST = "127.0.0.1"  # this machine only: the dashboard can edit and delete studies
DEFAULT_PORT = 8080
MISSING = (
    "error: `sweep dashboard` needs optuna-dashboard, which is not installed: "
    "pip install -e '.[dashboard]' in this repository (or pip install optuna-dashboard)"
)


def serve(study: optuna.Study, sweep: Sweep, host: str, port: int) -> None:
    """Serve optuna-dashboard on the study's storage at http://host:port/ until Ctrl-C or
    SIGTERM (kill, docker stop), which shuts the server down between requests."""
    try:
        dashboard = importlib.import_module("optuna_dashboard")
    except ImportError:
        sys.exit(MISSING)
    try:
        server = make_server(host, port, dashboard.wsgi(study._storage))
    except OSError as error:  # a port in use, a host not of this machine
        sys.exit(f"error: optuna-dashboard cannot listen on {host}:{port}: {error.strerror}")
    print(
        f"optuna-dashboard of study {sweep.study} ({storage_url(sweep)}) at "
        f"http://{host}:{port}/ (Ctrl-C stops it)",
        flush=True,
    )
    stop = threading.Thread(target=server.shutdown)  # shutdown waits for serve_forever's loop
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    print("optuna-dashboard stopped", flush=True)
