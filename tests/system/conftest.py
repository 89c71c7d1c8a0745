"""Fixtures that start the real service on a free loopback port.

Teardown stops every server still running with SIGTERM and requires exit
code 0 within ``STOP_TIMEOUT`` (a server that does not exit is killed);
each server's log tail is printed, which pytest shows when a test failed.

``production`` is PostgreSQL (the session's database, emptied) and S3 on
moto's server (a bucket of the test's own) for servers started with its
``env()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import PgDatabase
from tests.system.service import (
    Production,
    Server,
    StartServer,
    moto_client,
    spawn,
)
from vault.adapters.blobs.s3 import ensure_bucket


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def start_server(tmp_path: Path, data_dir: Path) -> Iterator[StartServer]:
    """Start ``vault serve`` processes on demand: ``start_server(NAME="value", ...)``."""
    started: list[Server] = []

    def start(*, data: Path | None = None, **env: str) -> Server:
        log_path = tmp_path / f"server-{len(started)}.log"
        server = spawn(data or data_dir, log_path, env)
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


@pytest.fixture
def production(pg_database: PgDatabase, moto_endpoint: str) -> Production:
    """An emptied PostgreSQL database, a fresh versioned bucket and a KMS key on moto."""
    pg_database.truncate_all(keep=("schema_version",))
    s3 = moto_client(moto_endpoint, "s3")
    bucket = f"vault-system-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, bucket)
    key = moto_client(moto_endpoint, "kms").create_key(Description=f"{bucket} documents")
    return Production(pg_database, moto_endpoint, bucket, key["KeyMetadata"]["KeyId"], s3)
