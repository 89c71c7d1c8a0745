"""``POST /api/v1/documents/verify``: re-hashing what is stored, and who may ask."""

from __future__ import annotations

from uuid import uuid4

import trio
from quart.typing import TestClientProtocol as Client

from tests.http.helpers import (
    DOCUMENT_FIELDS,
    VERIFY,
    archive_path,
    object_path,
    problem,
    uploaded,
    verify,
)
from tests.support import actor_headers
from vault.config import Settings
from vault.domain.models import Role


def _flip_byte(settings: Settings, storage_key: str) -> None:
    path = object_path(settings, storage_key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


class TestOutcome:
    async def test_intact_document_is_verified(self, client: Client) -> None:
        """An untouched document answers 200 with status verified and who verified it."""
        doc = await uploaded(client)
        auditor = uuid4()
        response = await verify(client, doc["id"], actor_headers(Role.AUDITOR, auditor))
        assert response.status_code == 200
        body = await response.get_json()
        assert body.keys() == DOCUMENT_FIELDS
        assert body["id"] == doc["id"]
        assert body["status"] == "verified"
        assert body["verified_by"] == str(auditor)
        assert body["hash_verified_at"] is not None
        assert body["sha256_hash"] == doc["sha256_hash"]

    async def test_tampered_object_is_a_mismatch(
        self, client: Client, settings: Settings
    ) -> None:
        """A stored object altered on disk answers 200 with status mismatch."""
        doc = await uploaded(client)
        await trio.to_thread.run_sync(_flip_byte, settings, doc["storage_key"])
        response = await verify(client, doc["id"])
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] == "mismatch"
        assert body["sha256_hash"] == doc["sha256_hash"]

    async def test_missing_object_is_a_mismatch(self, client: Client, settings: Settings) -> None:
        """A stored object that has vanished answers 200 mismatch, never a 5xx."""
        doc = await uploaded(client)
        await trio.to_thread.run_sync(object_path(settings, doc["storage_key"]).unlink)
        response = await verify(client, doc["id"])
        assert response.status_code == 200
        assert (await response.get_json())["status"] == "mismatch"

    async def test_verifying_an_archived_document_keeps_it_archived(self, client: Client) -> None:
        """Verification never un-archives a document."""
        doc = await uploaded(client)
        archived = await client.delete(archive_path(doc["id"]), headers=actor_headers(Role.ADMIN))
        assert archived.status_code == 200
        response = await verify(client, doc["id"])
        assert response.status_code == 200
        assert (await response.get_json())["status"] == "archived"


class TestRequest:
    async def test_unknown_document_is_404(self, client: Client) -> None:
        """A well-formed id that names no document answers 404."""
        response = await verify(client, str(uuid4()))
        await problem(response, 404, "DOCUMENT_NOT_FOUND")

    async def test_malformed_document_id_is_422(self, client: Client) -> None:
        """A document id that is not a UUID answers 422 naming it."""
        response = await verify(client, "not-a-uuid")
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", "document_id"] in [error["loc"] for error in body["errors"]]

    async def test_missing_document_id_is_422(self, client: Client) -> None:
        """A body without ``document_id`` answers 422."""
        response = await client.post(
            VERIFY, data=b"{}",
            headers={**actor_headers(Role.AUDITOR), "Content-Type": "application/json"},
        )
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_body_that_is_not_json_is_422(self, client: Client) -> None:
        """A body that does not parse as JSON answers 422."""
        response = await client.post(
            VERIFY, data=b"{document_id:",
            headers={**actor_headers(Role.AUDITOR), "Content-Type": "application/json"},
        )
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_body_that_is_not_an_object_is_422(self, client: Client) -> None:
        """A JSON body that is not an object answers 422."""
        response = await client.post(
            VERIFY, data=b'["document_id"]',
            headers={**actor_headers(Role.AUDITOR), "Content-Type": "application/json"},
        )
        await problem(response, 422, "VALIDATION_ERROR")


class TestActorField:
    async def test_verifier_id_names_the_actor_without_a_header(self, client: Client) -> None:
        """Without X-Actor-Id, ``verifier_id`` is the actor and is recorded as verifier."""
        doc = await uploaded(client)
        auditor = uuid4()
        response = await verify(
            client, doc["id"], {"X-Actor-Role": "auditor"}, verifier_id=str(auditor)
        )
        assert response.status_code == 200
        assert (await response.get_json())["verified_by"] == str(auditor)

    async def test_verified_by_is_accepted_as_an_alias(self, client: Client) -> None:
        """``verified_by`` stands in for ``verifier_id``, as the seed's clients send it."""
        doc = await uploaded(client)
        auditor = uuid4()
        response = await verify(
            client, doc["id"], {"X-Actor-Role": "auditor"}, verified_by=str(auditor)
        )
        assert response.status_code == 200
        assert (await response.get_json())["verified_by"] == str(auditor)

    async def test_verifier_id_naming_another_actor_is_403(self, client: Client) -> None:
        """``verifier_id`` that differs from X-Actor-Id answers 403."""
        doc = await uploaded(client)
        response = await verify(
            client, doc["id"], actor_headers(Role.AUDITOR), verifier_id=str(uuid4())
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_verifier_id_equal_to_the_actor_is_accepted(self, client: Client) -> None:
        """``verifier_id`` that names the X-Actor-Id actor is allowed."""
        doc = await uploaded(client)
        auditor = uuid4()
        response = await verify(
            client, doc["id"], actor_headers(Role.AUDITOR, auditor), verifier_id=str(auditor)
        )
        assert response.status_code == 200

    async def test_unknown_document_wins_over_forbidden(self, client: Client) -> None:
        """An investor verifying an unknown document answers 404, not 403."""
        response = await verify(client, str(uuid4()), actor_headers(Role.INVESTOR))
        await problem(response, 404, "DOCUMENT_NOT_FOUND")
