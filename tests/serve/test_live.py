"""`t2 serve` as a process: it listens, answers, and on SIGTERM answers what it holds, then exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
from typer.testing import CliRunner

from t2cli.cli.app import app
from tests.helpers import tiny_cli_world


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_help_shows_a_curl_and_a_bad_adapt_stops_before_the_model_loads(tmp_path, t2_home) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert shown.exit_code == 0 and "curl -s localhost:8000/v1/chat/completions" in shown.stdout
    refused = runner.invoke(app, ["serve", "--adapt", "nope", "--registry", str(tmp_path / "empty")])
    assert refused.exit_code == 3 and "nope" in refused.stderr


def test_sigterm_drains_the_request_in_flight_then_exits_0(tmp_path, t2_home) -> None:
    world = tiny_cli_world(tmp_path, [{"prompt": "hi"}])
    port = free_port()
    command = [sys.executable, "-m", "t2cli", "--threads", "1", "serve", "--model", world["model"]]
    command += ["--registry", world["registry"], "--adapt", "none", "--port", str(port), "--batch-window", "2"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").json()["status"] == "ok":
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.2)
        answered: list[httpx.Response] = []
        body = {"model": "arc-svf", "prompt": "is ice cold?", "max_tokens": 4}

        def post() -> None:
            answered.append(httpx.post(f"{url}/v1/completions", json=body, timeout=60))

        client = threading.Thread(target=post)
        client.start()
        time.sleep(0.5)  # the request waits in its 2 s batch window
        server.send_signal(signal.SIGTERM)
        client.join(60)
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, err
    assert answered and answered[0].status_code == 200 and answered[0].json()["t2"]["expert"] == "arc-svf@1"
    records = [line for line in out.splitlines() if '"/v1/completions"' in line]
    assert len(records) == 1 and '"status": 200' in records[0]
    assert "drained and stopped" in err
