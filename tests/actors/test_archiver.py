"""The archiver actor: soft archive of one document, and cascades for deleted entities."""

from __future__ import annotations

from uuid import uuid4

import pytest

from actors.archiver import Archived, EntityArchived
from actors.system import Vault
from tests.actors.helpers import (
    a_user,
    archive,
    archive_entity,
    outbox,
    store_document,
    upload_form,
)
from tests.support import pdf_bytes
from vault.domain.errors import DocumentNotFound
from vault.domain.models import Document, DocumentStatus, Role


async def live_documents(vault: Vault, entity_id: object) -> list[Document]:
    store = vault.backends.store
    return await vault.backends.in_db(
        lambda: store.list_documents(
            entity_id, entity_type=None, include_archived=False, limit=100, after=None
        )
    )


async def event_ids(vault: Vault) -> list[str]:
    return [row.event_id for row in await outbox(vault)]


class TestArchiveDocument:
    async def test_archiving_sets_status_who_and_when(self, vault: Vault) -> None:
        """The document becomes ``archived`` with the archiving user and a timestamp."""
        doc = await store_document(vault, pdf_bytes(100))
        user = a_user()
        result = await archive(vault, doc.id, user)
        assert isinstance(result, Archived)
        assert result.changed is True
        assert result.document.status is DocumentStatus.ARCHIVED
        assert result.document.archived_by == user.id
        assert result.document.archived_at is not None
        stored = await vault.backends.in_db(vault.backends.store.get_document, doc.id)
        assert stored == result.document

    async def test_archiving_writes_an_archived_event_and_an_audit_event(
        self, vault: Vault
    ) -> None:
        """``document.archived`` goes to both streams; the audit event names the file."""
        doc = await store_document(vault, pdf_bytes(100), upload_form(filename="kyc.pdf"))
        user = a_user()
        await archive(vault, doc.id, user)
        rows = [row for row in await outbox(vault, doc.id) if row.kind == "document.archived"]
        assert sorted(row.destination for row in rows) == ["audit_events", "document_events"]
        audit = next(row for row in rows if row.destination == "audit_events")
        assert audit.body["details"]["filename"] == "kyc.pdf"
        assert (audit.body["actor_type"], audit.body["actor_id"]) == ("user", str(user.id))

    async def test_archiving_twice_changes_nothing_the_second_time(self, vault: Vault) -> None:
        """The second archive answers the same document, ``changed=False``, and no new events."""
        doc = await store_document(vault, pdf_bytes(100))
        first = await archive(vault, doc.id)
        events_before = await event_ids(vault)
        second = await archive(vault, doc.id, a_user())
        assert second.changed is False
        assert second.document == first.document
        assert await event_ids(vault) == events_before

    async def test_archiving_an_unknown_document_is_not_found(self, vault: Vault) -> None:
        """An id nobody stored answers DocumentNotFound."""
        with pytest.raises(DocumentNotFound):
            await archive(vault, uuid4())


class TestArchiveEntity:
    async def test_a_cascade_archives_every_live_document_of_the_entity(self, vault: Vault) -> None:
        """Every live document of the deleted entity is archived, with no ``archived_by``."""
        entity_id = uuid4()
        docs = [
            await store_document(vault, pdf_bytes(100), upload_form(entity_id)) for _ in range(3)
        ]
        result = await archive_entity(vault, entity_id, f"evt-{uuid4()}")
        assert result == EntityArchived(3)
        assert await live_documents(vault, entity_id) == []
        for doc in docs:
            stored = await vault.backends.in_db(vault.backends.store.get_document, doc.id)
            assert stored.status is DocumentStatus.ARCHIVED
            assert stored.archived_by is None

    async def test_a_cascade_leaves_other_entities_alone(self, vault: Vault) -> None:
        """Documents of another entity stay live and announce nothing."""
        entity_id = uuid4()
        await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        bystander = await store_document(vault, pdf_bytes(100), upload_form())
        await archive_entity(vault, entity_id, f"evt-{uuid4()}")
        assert await live_documents(vault, bystander.entity_id) == [bystander]
        kinds = [row.kind for row in await outbox(vault, bystander.id)]
        assert "document.archived" not in kinds

    async def test_a_cascade_counts_only_documents_it_archived(self, vault: Vault) -> None:
        """A document archived earlier is neither counted nor announced again."""
        entity_id = uuid4()
        earlier = await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        await archive(vault, earlier.id)
        result = await archive_entity(vault, entity_id, f"evt-{uuid4()}")
        assert result == EntityArchived(1)
        archived_events = [
            row for row in await outbox(vault, earlier.id) if row.kind == "document.archived"
        ]
        assert len(archived_events) == 2

    async def test_a_redelivered_event_changes_nothing(self, vault: Vault) -> None:
        """The same ``event_id`` again answers count None and writes no events."""
        entity_id = uuid4()
        await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        event_id = f"evt-{uuid4()}"
        await archive_entity(vault, entity_id, event_id)
        await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        events_before = await event_ids(vault)

        result = await archive_entity(vault, entity_id, event_id)
        assert result == EntityArchived(None)
        assert await event_ids(vault) == events_before
        assert len(await live_documents(vault, entity_id)) == 1

    async def test_a_cascade_of_an_entity_with_no_documents_archives_none(
        self, vault: Vault
    ) -> None:
        """An entity with nothing stored answers a count of zero, not None."""
        result = await archive_entity(vault, uuid4(), f"evt-{uuid4()}")
        assert result == EntityArchived(0)

    async def test_cascade_audit_events_are_made_by_the_system(self, vault: Vault) -> None:
        """Audit events of a cascade carry ``actor_type`` system, no actor id, and the reason."""
        entity_id = uuid4()
        docs = [
            await store_document(vault, pdf_bytes(100), upload_form(entity_id)) for _ in range(2)
        ]
        event_id = f"evt-{uuid4()}"
        await archive_entity(vault, entity_id, event_id)
        for doc in docs:
            (audit,) = [
                row
                for row in await outbox(vault, doc.id)
                if row.destination == "audit_events" and row.kind == "document.archived"
            ]
            assert audit.body["actor_type"] == "system"
            assert audit.body["actor_id"] is None
            assert audit.body["details"]["reason"] == "entity_deleted"
            assert audit.body["correlation_id"] == event_id

    async def test_a_cascade_archives_a_frozen_entitys_documents_and_keeps_the_freeze(
        self, vault: Vault
    ) -> None:
        """The permissions service deleted the entity: its documents are archived even while
        it is frozen (archiving keeps every byte, and the sweep goes on verifying archived
        documents), and the freeze stays until someone lifts it."""
        entity_id = uuid4()
        doc = await store_document(vault, pdf_bytes(100), upload_form(entity_id))
        officer = a_user(Role.COMPLIANCE_OFFICER)
        await vault.freezes.change(entity_id, frozen=True, actor=officer, reason="inquiry",
                                   correlation_id=None)
        assert await archive_entity(vault, entity_id, f"evt-{uuid4()}") == EntityArchived(1)
        stored = await vault.backends.in_db(vault.backends.store.get_document, doc.id)
        assert stored.status is DocumentStatus.ARCHIVED
        state = await vault.freezes.state(entity_id)
        assert (state.frozen, state.reason, state.by) == (True, "inquiry", officer.id)
