"""`wave-lightning sweep dashboard FILE`: optuna-dashboard on the sweep's storage, localhost."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT
from wave_lightning.sweep import cli
from wave_lightning.sweep.dashboard import MISSING
from wave_lightning.sweep.spec import load_sweep
from wave_lightning.sweep.storage import open_storage, open_study


def tiny_sweep(tmp_path: Path, study: str) -> Path:
    """A created journal study of two queued grid points; its sweep file."""
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"study: {study}\n"
        f"configs: [{ROOT}/conf/data/copy.yaml, {ROOT}/conf/model/wrnn.yaml]\n"
        "space: {optimizer.init_args.lr: {choices: [0.01, 0.001]}}\n"
        "metric: {name: val/loss}\n"
        f"root: {tmp_path}/runs\n"
    )
    sweep = load_sweep(path)
    open_study(sweep, open_storage(sweep))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, timeout_s: float) -> dict:
    """GET url as JSON, retried until the server answers or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_dashboard_listens_on_localhost_by_default():
    args = cli.parser().parse_args(["dashboard", "sweeps/copy_ablation_cpu.yaml"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


def test_dashboard_serves_the_sweeps_study_list_and_stops_on_sigterm(tmp_path):
    pytest.importorskip("optuna_dashboard")
    path, port = tiny_sweep(tmp_path, "dashboard-test"), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "wave_lightning", "sweep", "dashboard", str(path)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        listed = get_json(f"http://127.0.0.1:{port}/api/studies", timeout_s=120)
        assert [s["study_name"] for s in listed["study_summaries"]] == ["dashboard-test"]
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=120)
    finally:
        server.kill()
    assert server.returncode == 0
    journal = tmp_path / "runs" / "journal.log"
    assert out.splitlines() == [
        f"optuna-dashboard of study dashboard-test ({journal}) at http://127.0.0.1:{port}/ "
        "(Ctrl-C stops it)",
        "optuna-dashboard stopped",
    ]


def test_dashboard_without_optuna_dashboard_says_how_to_install_it(tmp_path, monkeypatch):
    path = tiny_sweep(tmp_path, "dashboard-missing")
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["dashboard", str(path)])
    assert exit_info.value.code == MISSING


def test_dashboard_on_a_port_in_use_says_so_in_one_line(tmp_path, capsys):
    pytest.importorskip("optuna_dashboard")
    path = tiny_sweep(tmp_path, "dashboard-busy")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["dashboard", str(path), "--port", str(port)])
    assert exit_info.value.code == (
        f"error: optuna-dashboard cannot listen on 127.0.0.1:{port}: Address already in use"
    )
