"""Fixtures that start the real service on a free loopback port.

Teardown stops every server still running with SIGTERM and requires exit
code 0 within ``STOP_TIMEOUT`` (a server that does not exit is killed);
each server's log tail is printed, which pytest shows when a test failed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.service import Server, StartServer, free_port, vault_env


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def start_server(tmp_path: Path, data_dir: Path) -> Iterator[StartServer]:
    """Start ``vault serve`` processes on demand: ``start_server(NAME="value", ...)``."""
    started: list[Server] = []

    def start(*, data: Path | None = None, **env: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"server-{len(started)}-{port}.log"
        environment = vault_env(
            VAULT_DATA_DIR=str(data or data_dir),
            HOST="127.0.0.1",
            PORT=str(port),
            ENVIRONMENT="test",
            LOG_LEVEL="INFO",
        )
        environment.update(env)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "vault", "serve"],
                env=environment, stdout=log, stderr=subprocess.STDOUT,
            )
        server = Server(process, port, data or data_dir, log_path)
        started.append(server)
        server.wait_healthy()
        return server

    yield start

    failures = []
    for server in started:
        was_running = server.running()
        code = server.stop()
        print(f"--- {server.log_path.name} (exit {code}) ---\n{server.log_tail()}")
        if was_running and code != 0:
            failures.append(f"{server.log_path.name} exited {code} on SIGTERM")
    if failures:
        pytest.fail("; ".join(failures))


@pytest.fixture
def server(start_server: StartServer) -> Server:
    """One server on the embedded default, in a fresh data folder."""
    return start_server()
