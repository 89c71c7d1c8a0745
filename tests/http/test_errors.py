"""Problem bodies, request ids and their trip into the audit outbox."""

from __future__ import annotations

from typing import Any, NoReturn
from uuid import uuid4

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from actors.system import Vault
from tests.http.helpers import (
    archive_path,
    audit_rows,
    download_path,
    list_path,
    post_upload,
    problem,
    uploaded,
    verify,
)
from tests.support import actor_headers
from vault.config import Settings
from vault.domain.errors import StoreUnavailable
from vault.domain.models import Role


async def _request(client: Client, action: str, request_id: str | None) -> Response:
    """One request of each audited kind, with ``X-Request-ID`` when given."""
    headers = actor_headers(Role.ADMIN)
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if action == "upload":
        return await post_upload(client, headers=headers)
    doc = await uploaded(client)
    match action:
        case "verify":
            return await verify(client, doc["id"], headers)
        case "archive":
            return await client.delete(archive_path(doc["id"]), headers=headers)
        case "download":
            return await client.get(download_path(doc["id"]), headers=headers)
    raise AssertionError(action)


AUDITED = {
    "upload": "document.uploaded",
    "verify": "document.verified",
    "archive": "document.archived",
    "download": "document.download_url_issued",
}


class TestRequestId:
    async def test_sent_id_is_echoed_on_success(self, client: Client) -> None:
        """A client's X-Request-ID comes back unchanged on a 200."""
        response = await client.get(
            list_path(uuid4()), headers={**actor_headers(), "X-Request-ID": "client-req-42"}
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "client-req-42"

    async def test_sent_id_is_echoed_on_error(self, client: Client) -> None:
        """A client's X-Request-ID comes back unchanged on an error answer."""
        response = await client.get(
            download_path(uuid4()), headers={**actor_headers(), "X-Request-ID": "client-req-43"}
        )
        await problem(response, 404, "DOCUMENT_NOT_FOUND")
        assert response.headers["X-Request-ID"] == "client-req-43"

    async def test_id_is_generated_when_absent(self, client: Client) -> None:
        """Without X-Request-ID each answer carries a fresh one."""
        first = await client.get(list_path(uuid4()), headers=actor_headers())
        second = await client.get(list_path(uuid4()), headers=actor_headers())
        assert first.headers["X-Request-ID"]
        assert second.headers["X-Request-ID"]
        assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]

    async def test_id_is_generated_on_error_answers(self, client: Client) -> None:
        """A 401 without X-Request-ID still carries a generated one."""
        response = await client.get(list_path(uuid4()))
        await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["X-Request-ID"]

    async def test_id_is_on_operator_routes(self, client: Client) -> None:
        """Operator routes carry X-Request-ID too."""
        response = await client.get("/healthz", headers={"X-Request-ID": "probe-1"})
        assert response.headers["X-Request-ID"] == "probe-1"

    @pytest.mark.parametrize("action", list(AUDITED))
    async def test_sent_id_is_the_audit_correlation_id(
        self, client: Client, settings: Settings, action: str
    ) -> None:
        """The audit row a request causes carries its X-Request-ID as ``correlation_id``."""
        response = await _request(client, action, f"trace-{action}-7")
        assert response.status_code in (200, 201), await response.get_data(as_text=True)
        rows = [r for r in await audit_rows(settings) if r["action"] == AUDITED[action]]
        assert [r["correlation_id"] for r in rows][-1] == f"trace-{action}-7"

    async def test_generated_id_is_the_audit_correlation_id(
        self, client: Client, settings: Settings
    ) -> None:
        """A generated request id is the one the audit row carries."""
        response = await _request(client, "upload", None)
        assert response.status_code == 201
        [row] = [r for r in await audit_rows(settings) if r["action"] == "document.uploaded"]
        assert row["correlation_id"] == response.headers["X-Request-ID"]

    async def test_other_requests_ids_stay_out(self, client: Client, settings: Settings) -> None:
        """Each audit row carries only its own request's id."""
        await _request(client, "upload", "first-upload")
        await _request(client, "upload", "second-upload")
        rows = [r for r in await audit_rows(settings) if r["action"] == "document.uploaded"]
        assert [r["correlation_id"] for r in rows] == ["first-upload", "second-upload"]


class TestProblems:
    async def test_unknown_route_is_404_problem(self, client: Client) -> None:
        """A path no route serves answers 404 as problem JSON with a request id."""
        response = await client.get("/api/v1/nothing/here", headers=actor_headers())
        await problem(response, 404, "NOT_FOUND")
        assert response.headers["X-Request-ID"]

    async def test_wrong_method_is_405_problem(self, client: Client) -> None:
        """A known path with a method it does not serve answers 405 as problem JSON."""
        response = await client.put("/api/v1/documents/verify", headers=actor_headers())
        await problem(response, 405, "METHOD_NOT_ALLOWED")

    async def test_unexpected_error_is_500_without_traceback(
        self, client: Client, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected exception answers 500 INTERNAL_ERROR with no traceback or message."""

        def explode(*args: Any, **kwargs: Any) -> NoReturn:
            raise RuntimeError("secret internals at /srv/vault/db.py line 12")

        monkeypatch.setattr(vault.backends.store, "list_documents", explode)
        response = await client.get(
            list_path(uuid4()), headers={**actor_headers(), "X-Request-ID": "boom-1"}
        )
        body = await problem(response, 500, "INTERNAL_ERROR")
        text = await response.get_data(as_text=True)
        assert "Traceback" not in text
        assert "secret internals" not in text
        assert "RuntimeError" not in text
        assert body.keys() == {"type", "title", "status", "detail", "error_code"}
        assert response.headers["X-Request-ID"] == "boom-1"

    async def test_unreachable_store_is_503(
        self, client: Client, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A metadata store that cannot be reached answers 503 DEPENDENCY_UNAVAILABLE."""

        def unreachable(*args: Any, **kwargs: Any) -> NoReturn:
            raise StoreUnavailable("database is locked")

        monkeypatch.setattr(vault.backends.store, "get_document", unreachable)
        response = await client.get(download_path(uuid4()), headers=actor_headers())
        await problem(response, 503, "DEPENDENCY_UNAVAILABLE")
