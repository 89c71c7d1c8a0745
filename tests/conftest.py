"""Fixtures for every suite: settings on a fresh folder, a running vault, moto, and a
stand-in permission service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from actors.system import Sizing, Vault, run_vault
from tests.permission_service import FakePermissionService
from tests.pg import pg_database  # noqa: F401  (a fixture, used by name)
from tests.support import test_settings
from vault.config import Settings
from vault_http.serve import build_backends


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return test_settings(tmp_path / "data")


@pytest.fixture
def sizing() -> Sizing:
    return Sizing()


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, sizing: Sizing
) -> AsyncIterator[Vault]:
    """Every actor running on SQLite and the local blob store in a temp folder."""
    backends, _signer = await trio.to_thread.run_sync(build_backends, settings)
    running: Vault = await nursery.start(run_vault, backends, sizing)
    yield running
    await running.stop(5)
    await trio.to_thread.run_sync(backends.store.close)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a loopback port, shared by the session (boto3 speaks real HTTP)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Credentials and region for moto; never real ones."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_endpoint


@pytest.fixture
def permission_service() -> Iterator[FakePermissionService]:
    """A fake Entity & Permissions service on loopback, answering allow until told otherwise."""
    with FakePermissionService.running() as service:
        yield service
