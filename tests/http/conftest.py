"""The app's own test client, over a vault running in the test's event loop."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol

from actors.access import MatrixAuthorizer
from actors.system import Vault
from vault.wiring import url_signer
from vault_http.app import VaultApp, create_app
from vault_http.identity import HeaderIdentity


@pytest.fixture
def app(vault: Vault) -> VaultApp:
    settings = vault.backends.settings
    return create_app(
        vault,
        identity=HeaderIdentity(settings.epr_mock_roles),
        authorizer=MatrixAuthorizer(),
        signer=url_signer(settings),
    )


@pytest.fixture
def client(app: VaultApp) -> TestClientProtocol:
    return app.test_client()
