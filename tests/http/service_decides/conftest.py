"""``settings`` with EPR_MOCK_MODE=false, the authorizer ``vault serve`` wires for them,
and the HTTP app around both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.access import ServiceAuthorizer
from actors.system import Sizing, Vault, authorizer_for
from tests.http.service_decides import TIMEOUT
from tests.permission_service import FakePermissionService
from tests.support import test_settings
from vault.config import Settings
from vault.wiring import url_signer
from vault_http.app import VaultApp, create_app
from vault_http.identity import identity_for


@pytest.fixture
def epr_url(permission_service: FakePermissionService) -> str:
    return permission_service.url


@pytest.fixture
def settings(tmp_path: Path, epr_url: str) -> Settings:
    return test_settings(
        tmp_path / "data",
        epr_mock_mode=False,
        epr_service_url=epr_url,
        epr_service_timeout=TIMEOUT,
    )


@pytest.fixture
def authorizer(settings: Settings) -> Iterator[ServiceAuthorizer]:
    """The authorizer ``vault serve`` wires for these settings, closed at teardown."""
    wired = authorizer_for(settings, Sizing())
    assert isinstance(wired, ServiceAuthorizer)
    try:
        yield wired
    finally:
        wired.close()


@pytest.fixture
def app(vault: Vault, settings: Settings, authorizer: ServiceAuthorizer) -> VaultApp:
    return create_app(
        vault, identity=identity_for(settings), authorizer=authorizer,
        signer=url_signer(settings),
    )
