"""``GET /api/v1/documents/{id}/download`` and the signed blob URLs it hands out."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
from quart.typing import TestClientProtocol as Client

from tests.http.helpers import (
    archive_path,
    audit_rows,
    download_path,
    problem,
    uploaded,
    url_path,
)
from tests.support import actor_headers, pdf_bytes
from vault.adapters.blobs.signing import DownloadClaims
from vault.config import Settings
from vault.domain.models import Role
from vault.wiring import url_signer

READER = actor_headers(Role.INVESTOR)


async def _download(client: Client, document_id: str, **query: str) -> dict[str, Any]:
    response = await client.get(download_path(document_id), headers=READER, query_string=query)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def hand_made_token(settings: Settings, doc: dict[str, Any], *, expires_at: int) -> str:
    """A blob token for ``doc`` signed with the service's own key, expiring at ``expires_at``."""
    signer = await trio.to_thread.run_sync(url_signer, settings)
    return signer.sign(
        DownloadClaims(
            document_id=UUID(doc["id"]),
            key=doc["storage_key"],
            version_id=None,
            filename=doc["filename"],
            mime_type=doc["mime_type"],
            expires_at=expires_at,
        )
    )


class TestIssuedUrl:
    async def test_answers_exactly_the_four_fields(
        self, client: Client, settings: Settings
    ) -> None:
        """The answer names the document, a URL under PUBLIC_BASE_URL, and its expiry."""
        doc = await uploaded(client)
        before = int(time.time())
        body = await _download(client, doc["id"])
        after = int(time.time())
        assert body.keys() == {"document_id", "download_url", "expires_in_seconds", "expires_at"}
        assert body["document_id"] == doc["id"]
        assert body["download_url"].startswith(
            f"{settings.effective_public_base_url}/api/v1/blobs/"
        )
        expires_at = datetime.fromisoformat(body["expires_at"])
        assert expires_at.utcoffset() is not None
        assert before + 900 <= expires_at.timestamp() <= after + 900

    async def test_expiry_defaults_to_900_seconds(self, client: Client) -> None:
        """Without ``expires_in`` the URL lives PRESIGNED_URL_EXPIRATION_SECONDS (900)."""
        doc = await uploaded(client)
        assert (await _download(client, doc["id"]))["expires_in_seconds"] == 900

    @pytest.mark.parametrize("seconds", [1, 60, 3600])
    async def test_custom_expiry_is_honoured(self, client: Client, seconds: int) -> None:
        """An ``expires_in`` from 1 to 3600 seconds is used as asked."""
        doc = await uploaded(client)
        before = int(time.time())
        body = await _download(client, doc["id"], expires_in=str(seconds))
        assert body["expires_in_seconds"] == seconds
        assert datetime.fromisoformat(body["expires_at"]).timestamp() >= before + seconds

    @pytest.mark.parametrize("seconds", ["0", "-5", "3601"])
    async def test_expiry_out_of_range_is_400(self, client: Client, seconds: str) -> None:
        """An ``expires_in`` below 1 or above 3600 answers 400 INVALID_SIGNED_URL_EXPIRY."""
        doc = await uploaded(client)
        response = await client.get(
            download_path(doc["id"]), headers=READER, query_string={"expires_in": seconds}
        )
        await problem(response, 400, "INVALID_SIGNED_URL_EXPIRY")

    async def test_expiry_that_is_not_an_integer_is_422(self, client: Client) -> None:
        """A non-integer ``expires_in`` answers 422."""
        doc = await uploaded(client)
        response = await client.get(
            download_path(doc["id"]), headers=READER, query_string={"expires_in": "soon"}
        )
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_unknown_document_is_404(self, client: Client) -> None:
        """A well-formed id that names no document answers 404."""
        response = await client.get(download_path(uuid4()), headers=READER)
        await problem(response, 404, "DOCUMENT_NOT_FOUND")

    async def test_malformed_document_id_is_422(self, client: Client) -> None:
        """A document id that is not a UUID answers 422."""
        response = await client.get(download_path("not-a-uuid"), headers=READER)
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_requestor_id_naming_another_actor_is_403(self, client: Client) -> None:
        """``requestor_id`` that differs from X-Actor-Id answers 403."""
        doc = await uploaded(client)
        response = await client.get(
            download_path(doc["id"]), headers=READER,
            query_string={"requestor_id": str(uuid4())},
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_archived_document_stays_downloadable(self, client: Client) -> None:
        """Archiving is a soft delete: the document can still be downloaded."""
        content = pdf_bytes(200)
        doc = await uploaded(client, content=content)
        archived = await client.delete(archive_path(doc["id"]), headers=actor_headers(Role.ADMIN))
        assert archived.status_code == 200
        body = await _download(client, doc["id"])
        served = await client.get(url_path(body["download_url"]))
        assert served.status_code == 200
        assert await served.get_data() == content

    async def test_issuing_a_url_is_audited(self, client: Client, settings: Settings) -> None:
        """Each issued URL adds a document.download_url_issued audit row naming the requestor."""
        doc = await uploaded(client)
        reader = uuid4()
        response = await client.get(
            download_path(doc["id"]), headers=actor_headers(Role.INVESTOR, reader),
            query_string={"expires_in": "120"},
        )
        assert response.status_code == 200
        issued = [r for r in await audit_rows(settings)
                  if r["action"] == "document.download_url_issued"]
        assert len(issued) == 1
        assert issued[0]["entity_id"] == doc["id"]
        assert issued[0]["actor_id"] == str(reader)
        assert issued[0]["details"]["expires_in_seconds"] == 120


class TestBlobUrl:
    async def test_serves_the_exact_bytes_with_the_documents_type(self, client: Client) -> None:
        """The URL's path, fetched with no identity, streams the stored bytes as their type."""
        content = pdf_bytes(5000)
        doc = await uploaded(client, content=content, filename="deck.pdf")
        body = await _download(client, doc["id"])
        served = await client.get(url_path(body["download_url"]))
        assert served.status_code == 200
        assert served.mimetype == "application/pdf"
        assert "deck.pdf" in served.headers["Content-Disposition"]
        assert await served.get_data() == content

    async def test_tampered_token_is_403(self, client: Client) -> None:
        """A token whose claims were changed after signing answers 403."""
        doc = await uploaded(client)
        path = url_path((await _download(client, doc["id"]))["download_url"])
        prefix, token = path.rsplit("/", 1)
        payload, mac = token.split(".")
        claims = json.loads(_unb64(payload))
        claims["e"] += 86_400
        forged = f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}.{mac}"
        response = await client.get(f"{prefix}/{forged}")
        body = await problem(response, 403, "UNAUTHORIZED_ACCESS")
        assert "tampered" in body["detail"]

    async def test_garbled_token_is_403(self, client: Client) -> None:
        """A token that is not a token at all answers 403."""
        response = await client.get("/api/v1/blobs/not-a-token")
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_expired_token_is_403(self, client: Client, settings: Settings) -> None:
        """A correctly signed token past its expiry answers 403."""
        doc = await uploaded(client)
        token = await hand_made_token(settings, doc, expires_at=int(time.time()) - 1)
        response = await client.get(f"/api/v1/blobs/{token}")
        body = await problem(response, 403, "UNAUTHORIZED_ACCESS")
        assert "expired" in body["detail"]

    async def test_token_signed_by_this_service_is_honoured(
        self, client: Client, settings: Settings
    ) -> None:
        """The same hand-made token with a future expiry serves the document (control case)."""
        content = pdf_bytes(100)
        doc = await uploaded(client, content=content)
        token = await hand_made_token(settings, doc, expires_at=int(time.time()) + 60)
        response = await client.get(f"/api/v1/blobs/{token}")
        assert response.status_code == 200
        assert await response.get_data() == content
