"""``DELETE /api/v1/documents/{id}``: soft archive, idempotent, by the right actor."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from quart.typing import TestClientProtocol as Client

from tests.http.helpers import archive_path, list_path, outbox, problem, uploaded
from tests.support import actor_headers
from vault.config import Settings
from vault.domain.models import Role

ARCHIVER = actor_headers(Role.COMPLIANCE_OFFICER)


class TestArchive:
    async def test_answers_id_status_and_time(self, client: Client) -> None:
        """Archiving answers 200 with exactly document_id, status archived and archived_at."""
        doc = await uploaded(client)
        response = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        assert response.status_code == 200
        body = await response.get_json()
        assert body.keys() == {"document_id", "status", "archived_at"}
        assert body["document_id"] == doc["id"]
        assert body["status"] == "archived"
        assert datetime.fromisoformat(body["archived_at"]).utcoffset() is not None

    async def test_archived_document_records_who_and_when(self, client: Client) -> None:
        """The listed document carries status archived, archived_by and the same archived_at."""
        entity, officer = uuid4(), uuid4()
        doc = await uploaded(client, entity_id=entity)
        response = await client.delete(
            archive_path(doc["id"]), headers=actor_headers(Role.COMPLIANCE_OFFICER, officer)
        )
        archived_at = (await response.get_json())["archived_at"]
        listing = await client.get(
            list_path(entity), headers=ARCHIVER, query_string={"include_archived": "true"}
        )
        [listed] = (await listing.get_json())["documents"]
        assert listed["status"] == "archived"
        assert listed["archived_by"] == str(officer)
        assert listed["archived_at"] == archived_at

    async def test_archived_documents_leave_the_default_listing(self, client: Client) -> None:
        """After archiving, the document is no longer in the entity's default listing."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity)
        response = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        assert response.status_code == 200
        listing = await client.get(list_path(entity), headers=ARCHIVER)
        assert (await listing.get_json())["documents"] == []

    async def test_archiving_twice_answers_the_same(self, client: Client) -> None:
        """A second archive answers 200 with the first archived_at."""
        doc = await uploaded(client)
        first = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        second = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        assert second.status_code == 200
        assert await second.get_json() == await first.get_json()

    async def test_archiving_twice_emits_nothing_new(
        self, client: Client, settings: Settings
    ) -> None:
        """A second archive adds no outbox rows."""
        doc = await uploaded(client)
        first = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        assert first.status_code == 200
        rows = await outbox(settings)
        assert any(r.get("action") == "document.archived" for r in rows)
        second = await client.delete(archive_path(doc["id"]), headers=ARCHIVER)
        assert second.status_code == 200
        assert await outbox(settings) == rows

    async def test_archive_is_audited_with_the_filename(
        self, client: Client, settings: Settings
    ) -> None:
        """Archiving adds a document.archived audit row and a document.archived event."""
        officer = uuid4()
        doc = await uploaded(client, filename="old.pdf")
        response = await client.delete(
            archive_path(doc["id"]), headers=actor_headers(Role.COMPLIANCE_OFFICER, officer)
        )
        assert response.status_code == 200
        rows = await outbox(settings)
        [audit] = [r for r in rows if r["destination"] == "audit_events"
                   and r["action"] == "document.archived"]
        assert audit["actor_id"] == str(officer)
        assert audit["entity_id"] == doc["id"]
        assert audit["details"]["filename"] == "old.pdf"
        assert [r["event_type"] for r in rows if r["destination"] == "document_events"
                and r["payload"]["document_id"] == doc["id"]] == [
            "document.uploaded", "document.archived"]


class TestRefusals:
    async def test_archived_by_naming_another_actor_is_403(self, client: Client) -> None:
        """``archived_by`` that differs from X-Actor-Id answers 403 and archives nothing."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity)
        response = await client.delete(
            archive_path(doc["id"]), headers=ARCHIVER, query_string={"archived_by": str(uuid4())}
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
        listing = await client.get(list_path(entity), headers=ARCHIVER)
        assert [d["id"] for d in (await listing.get_json())["documents"]] == [doc["id"]]

    async def test_unknown_document_is_404(self, client: Client) -> None:
        """Archiving a well-formed id that names no document answers 404."""
        response = await client.delete(archive_path(uuid4()), headers=ARCHIVER)
        await problem(response, 404, "DOCUMENT_NOT_FOUND")

    async def test_malformed_document_id_is_422(self, client: Client) -> None:
        """Archiving an id that is not a UUID answers 422."""
        response = await client.delete(archive_path("not-a-uuid"), headers=ARCHIVER)
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_malformed_archived_by_is_422(self, client: Client) -> None:
        """An ``archived_by`` that is not a UUID, beside a valid X-Actor-Id, answers 422."""
        doc = await uploaded(client)
        response = await client.delete(
            archive_path(doc["id"]), headers=ARCHIVER, query_string={"archived_by": "me"}
        )
        await problem(response, 422, "VALIDATION_ERROR")
