"""The HTTP layer counts each ``/api/`` request in flight, for the sweep to wait for a lull."""

from __future__ import annotations

from uuid import uuid4

import pytest
from quart.typing import TestClientProtocol as Client

from actors.system import Vault
from actors.traffic import Traffic
from tests.support import actor_headers
from vault.domain.models import Role


class Recording(Traffic):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def started(self) -> None:
        super().started()
        self.seen.append(("started", self.in_flight))

    def finished(self) -> None:
        super().finished()
        self.seen.append(("finished", self.in_flight))


@pytest.fixture
def traffic(vault: Vault) -> Recording:
    recording = Recording()
    vault.traffic = recording
    return recording


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/v1/documents/{uuid4()}", 200),  # a listing
        ("/api/v1/documents/not-a-uuid", 422),
        ("/api/v1/no-such-route", 404),
    ],
)
async def test_each_api_request_is_counted_once_whatever_it_answers(
    client: Client, traffic: Recording, path: str, status: int
) -> None:
    response = await client.get(path, headers=actor_headers(Role.ADMIN))
    assert response.status_code == status
    assert traffic.seen == [("started", 1), ("finished", 0)]


async def test_a_request_refused_before_its_handler_is_counted_too(
    client: Client, traffic: Recording
) -> None:
    response = await client.get(f"/api/v1/documents/{uuid4()}")  # no identity: 401
    assert response.status_code == 401
    assert traffic.seen == [("started", 1), ("finished", 0)]


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json"])
async def test_operator_routes_are_not_client_traffic(
    client: Client, traffic: Recording, path: str
) -> None:
    assert (await client.get(path)).status_code == 200
    assert traffic.seen == []
