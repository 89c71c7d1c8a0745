"""The ``MetadataStore`` contract, run against every backend in ``conftest``.

The last class holds what only the SQLite store promises (file handling,
driver-error mapping); everything above it is the shared contract.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest

from tests.vault.store_helpers import (
    BASE,
    SEED_DOCUMENT_COLUMNS,
    SEED_PROCESSED_EVENT_COLUMNS,
    STORE_CALLS,
    EventRecorder,
    StoreBackend,
    archive_entity,
    archive_entity_batch,
    failing_events,
    integrate_all,
    leaf_of,
    list_all,
    make_document,
    make_event,
    no_events,
    pending,
    race,
    upload,
)
from vault.adapters.stores import sqlite as sqlite_store
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.errors import DocumentNotFound, DuplicateDocument, StoreUnavailable
from vault.domain.events import Destination, OutboxEvent
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.merkle import leaf_hash
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType
from vault.ports import CascadeBatch, MetadataStore, PageCursor


class TestSchema:
    def test_migrate_is_idempotent(self, store: MetadataStore) -> None:
        """Migrating an already migrated store keeps its data."""
        stored = upload(store, make_document())

        store.migrate()
        store.migrate()

        assert store.get_document(stored.id) == stored

    def test_ping_answers(self, store: MetadataStore, store_backend: StoreBackend) -> None:
        """A healthy store answers ping with None and goes on serving what it holds, while a
        closed store's ping raises StoreUnavailable."""
        stored = upload(store, make_document())

        assert store.ping() is None

        assert store.get_document(stored.id) == stored
        closed = store_backend.open_store()
        closed.close()
        with pytest.raises(StoreUnavailable):
            closed.ping()


class TestDocumentRoundTrip:
    def test_every_field_survives(self, store: MetadataStore) -> None:
        """A document with every field set reads back equal to what was stored."""
        doc = make_document(
            entity_type=EntityType.COMPLIANCE,
            token_id=42,
            document_type=DocumentType.OFFERING_MEMORANDUM,
            filename="mémorandum (final).pdf",
            mime_type="application/pdf",
            size_bytes=2**31 - 1,
            storage_bucket="vault-bucket",
            storage_version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
            status=DocumentStatus.VERIFIED,
            verified_by=uuid4(),
            archived_by=uuid4(),
            archived_at=BASE + timedelta(days=2, microseconds=1),
            hash_verified_at=BASE + timedelta(days=1, microseconds=7),
            metadata={"description": "Q3 ☃", "tags": ["a", "b"], "extra": {"n": 1.5}},
            updated_at=BASE + timedelta(days=3, microseconds=999999),
        )

        stored = upload(store, doc, unique_hash=False)

        assert stored == attrs.evolve(doc, on_chain_reference=stored.on_chain_reference)
        assert store.get_document(doc.id) == stored

    def test_present_ids_are_those_with_a_row(self, store_backend: StoreBackend) -> None:
        """documents_present names exactly the ids that have a row, archived or not."""
        store = store_backend.open_store()
        entity = uuid4()
        stored = insert_documents(store_backend, entity, 1_203)
        archived = upload(store, make_document(entity_id=entity), unique_hash=False)
        store.archive_document(
            archived.id, archived_by=None, archived_at=BASE, events=lambda _: []
        )
        strangers = [uuid4() for _ in range(3)]
        asked = [*strangers, *stored, archived.id]
        assert store.documents_present(asked) == {*stored, archived.id}
        assert store.documents_present([]) == set()

    def test_optional_fields_stay_none(self, store: MetadataStore) -> None:
        """Unset optional fields read back as None, not as empty values."""
        stored = upload(store, make_document())

        loaded = store.get_document(stored.id)

        assert loaded == stored
        assert (loaded.token_id, loaded.metadata, loaded.storage_version_id) == (None, None, None)
        assert (loaded.verified_by, loaded.archived_at, loaded.hash_verified_at) == (
            None,
            None,
            None,
        )

    def test_values_come_back_as_their_types(self, store: MetadataStore) -> None:
        """Enums, UUIDs and timestamps read back as the model's types, not as text."""
        loaded = store.get_document(upload(store, make_document()).id)

        assert type(loaded.status) is DocumentStatus
        assert type(loaded.entity_type) is EntityType
        assert type(loaded.document_type) is DocumentType
        assert isinstance(loaded.id, UUID)
        assert isinstance(loaded.uploaded_by, UUID)
        assert isinstance(loaded.created_at, datetime)

    def test_timestamps_come_back_in_utc_to_the_microsecond(self, store: MetadataStore) -> None:
        """A timestamp given with another offset reads back as the same instant in UTC."""
        plus_two = timezone(timedelta(hours=2))
        created = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=plus_two)

        loaded = store.get_document(
            upload(store, make_document(created_at=created, updated_at=created)).id
        )

        assert loaded.created_at == created
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert loaded.created_at.microsecond == 678901

    def test_upload_cites_its_registered_leaf(self, store: MetadataStore) -> None:
        """The stored document's reference is 0x and the leaf hash of its pending leaf."""
        stored = upload(store, make_document())

        found = leaf_of(store, stored)

        assert stored.on_chain_reference == "0x" + leaf_hash(found.leaf).hex()
        assert found.leaf_hash == leaf_hash(found.leaf).hex()
        assert found.leaf_index is None
        leaf = Leaf.parse(found.leaf)
        assert (leaf.kind, leaf.document_id, leaf.sha256, leaf.size) == (
            LeafKind.REGISTERED, stored.id, stored.sha256_hash, stored.size_bytes
        )
        assert (leaf.entity_type, leaf.entity_id) == (stored.entity_type, stored.entity_id)
        assert leaf.time == stored.created_at.replace(microsecond=789000)

    def test_unknown_document_is_not_found(self, store: MetadataStore) -> None:
        """Reading an id that was never stored raises DocumentNotFound for that id."""
        missing = uuid4()

        with pytest.raises(DocumentNotFound) as caught:
            store.get_document(missing)

        assert caught.value.document_id == missing


class TestDuplicateGuard:
    def test_second_upload_names_the_first(self, store: MetadataStore) -> None:
        """A second live upload of one hash for one entity is refused, naming the first."""
        first = upload(store, make_document())

        with pytest.raises(DuplicateDocument) as caught:
            upload(store, make_document(entity_id=first.entity_id, sha256_hash=first.sha256_hash))

        assert caught.value.existing_document_id == first.id

    def test_refused_upload_leaves_nothing_behind(self, store: MetadataStore) -> None:
        """A refused upload stores no row, no events and no ledger entry."""
        first = upload(store, make_document())
        duplicate = make_document(entity_id=first.entity_id, sha256_hash=first.sha256_hash)
        recorder = EventRecorder()

        with pytest.raises(DuplicateDocument):
            store.record_upload(duplicate, recorder, unique_hash=True)

        with pytest.raises(DocumentNotFound):
            store.get_document(duplicate.id)
        assert pending(store) == 0
        assert store.pending_leaves() == 1
        assert store.registered_leaf(duplicate.id) is None

    def test_same_hash_for_another_entity_is_allowed(self, store: MetadataStore) -> None:
        """The guard is per entity: another entity may store the same bytes."""
        first = upload(store, make_document())

        other = upload(store, make_document(sha256_hash=first.sha256_hash))

        assert store.get_document(other.id) == other

    def test_archiving_frees_the_hash(self, store: MetadataStore) -> None:
        """Once the holder is archived, the same hash can be uploaded again for the entity."""
        first = upload(store, make_document())
        store.archive_document(first.id, archived_by=None, archived_at=BASE, events=no_events)

        again = upload(
            store, make_document(entity_id=first.entity_id, sha256_hash=first.sha256_hash)
        )

        assert store.get_document(again.id) == again

    def test_guard_off_allows_duplicates(self, store: MetadataStore) -> None:
        """With unique_hash false a second live document with the same hash is stored."""
        first = upload(store, make_document(), unique_hash=False)
        twin = make_document(entity_id=first.entity_id, sha256_hash=first.sha256_hash)

        second = upload(store, twin, unique_hash=False)

        assert store.get_document(second.id) == second

    def test_guard_sees_duplicates_stored_while_it_was_off(self, store: MetadataStore) -> None:
        """A live document stored without the guard still blocks a guarded upload of its hash."""
        first = upload(store, make_document(), unique_hash=False)

        with pytest.raises(DuplicateDocument) as caught:
            upload(store, make_document(entity_id=first.entity_id, sha256_hash=first.sha256_hash))

        assert caught.value.existing_document_id == first.id

    def test_find_active_duplicate_names_the_live_document(self, store: MetadataStore) -> None:
        """The pre-check names the live document holding the hash."""
        first = upload(store, make_document())

        assert store.find_active_duplicate(first.entity_id, first.sha256_hash) == first.id

    def test_find_active_duplicate_ignores_archived_and_other_entities(
        self, store: MetadataStore
    ) -> None:
        """The pre-check finds nothing for another entity, nor once the holder is archived."""
        first = upload(store, make_document())

        assert store.find_active_duplicate(uuid4(), first.sha256_hash) is None
        store.archive_document(first.id, archived_by=None, archived_at=BASE, events=no_events)
        assert store.find_active_duplicate(first.entity_id, first.sha256_hash) is None


class TestConcurrency:
    def test_racing_threads_store_exactly_one(self, store: MetadataStore) -> None:
        """Eight threads uploading one hash at once give one success and seven duplicates."""
        entity_id, sha = uuid4(), "ab" * 32
        docs = [make_document(entity_id=entity_id, sha256_hash=sha) for _ in range(8)]
        recorder = EventRecorder()

        outcomes = race(
            [partial(store.record_upload, doc, recorder, unique_hash=True) for doc in docs]
        )

        winners = [o for o in outcomes if isinstance(o, Document)]
        losers = [o for o in outcomes if isinstance(o, DuplicateDocument)]
        assert len(winners) == 1
        assert len(losers) == 7
        assert {loser.existing_document_id for loser in losers} == {winners[0].id}
        listed = store.list_documents(
            entity_id, entity_type=None, include_archived=True, limit=100, after=None
        )
        assert [d.id for d in listed] == [winners[0].id]
        assert pending(store) == 1

    def test_racing_store_instances_store_exactly_one(self, store_backend: StoreBackend) -> None:
        """Two stores on one database (as two processes) racing one hash store it once."""
        stores = [store_backend.open_store(), store_backend.open_store()]
        entity_id, sha = uuid4(), "cd" * 32
        docs = [make_document(entity_id=entity_id, sha256_hash=sha) for _ in range(8)]

        outcomes = race([partial(upload, stores[i % 2], doc) for i, doc in enumerate(docs)])

        winners = [o for o in outcomes if isinstance(o, Document)]
        assert len(winners) == 1
        assert sum(isinstance(o, DuplicateDocument) for o in outcomes) == 7
        for s in stores:
            assert s.find_active_duplicate(entity_id, sha) == winners[0].id

    def test_racing_uploads_and_integrations_make_one_tree(
        self, store_backend: StoreBackend
    ) -> None:
        """Uploads and integrations racing from two stores give every leaf one index."""
        stores = [store_backend.open_store(), store_backend.open_store()]
        docs = [make_document() for _ in range(8)]

        def integrate(store: MetadataStore) -> int:
            return store.integrate_leaves(3, BASE).added

        race(
            [partial(upload, stores[i % 2], doc) for i, doc in enumerate(docs)]
            + [partial(integrate, stores[i % 2]) for i in range(4)]
        )
        assert integrate_all(stores[1]) == 8

        indexes = sorted(leaf_of(stores[0], doc).leaf_index or 0 for doc in docs)
        assert indexes == list(range(8))
        assert stores[0].pending_leaves() == 0

    def test_racing_state_changes_all_succeed(self, store_backend: StoreBackend) -> None:
        """Read-then-write changes racing from two stores all commit, none refused as busy."""
        stores = [store_backend.open_store(), store_backend.open_store()]
        docs = [upload(stores[0], make_document()) for _ in range(16)]
        verifier = uuid4()

        def change(i: int, doc: Document) -> Document:
            store = stores[i % 2]
            if i % 2:
                return store.archive_document(
                    doc.id, archived_by=None, archived_at=BASE, events=EventRecorder()
                )[0]
            return store.record_verification(
                doc.id,
                status=DocumentStatus.VERIFIED,
                calculated_hash=doc.sha256_hash,
                verified_by=verifier,
                verified_at=BASE,
                events=EventRecorder(),
            )

        outcomes = race([partial(change, i, doc) for i, doc in enumerate(docs)])

        assert [stores[0].get_document(d.id) for d in docs] == outcomes
        assert pending(stores[1]) == 16


class TestAtomicity:
    def test_failing_event_builder_undoes_the_upload(self, store: MetadataStore) -> None:
        """If building the events fails, the upload leaves no row, claim or ledger entry."""
        doc = make_document()

        with pytest.raises(RuntimeError, match="event builder failed"):
            store.record_upload(doc, failing_events, unique_hash=True)

        with pytest.raises(DocumentNotFound):
            store.get_document(doc.id)
        assert store.pending_leaves() == 0
        retried = upload(store, attrs.evolve(doc, id=uuid4()))
        assert store.pending_leaves() == 1
        assert store.registered_leaf(retried.id) is not None

    def test_failing_event_builder_undoes_the_archive(self, store: MetadataStore) -> None:
        """If building the events fails, archiving leaves the document as it was."""
        stored = upload(store, make_document())

        with pytest.raises(RuntimeError, match="event builder failed"):
            store.archive_document(
                stored.id, archived_by=None, archived_at=BASE, events=failing_events
            )

        assert store.get_document(stored.id) == stored
        assert store.find_active_duplicate(stored.entity_id, stored.sha256_hash) == stored.id

    def test_upload_events_are_written_with_the_document(self, store: MetadataStore) -> None:
        """record_upload gives the builder the stored document and writes its events."""
        recorder = EventRecorder()

        stored = store.record_upload(make_document(), recorder, unique_hash=True)

        assert recorder.documents == [stored]
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        assert [row.event.group_id for row in rows] == [str(stored.id)]


class TestLedger:
    def test_size_limit_holds_64_bit_sizes(self, store: MetadataStore) -> None:
        """A migrated store records any size up to 2**63 - 1 bytes."""
        doc = upload(store, make_document(size_bytes=2**63 - 1), unique_hash=False)

        assert store.size_limit() == 2**63 - 1
        assert store.get_document(doc.id).size_bytes == 2**63 - 1


def newest_first(docs: Sequence[Document]) -> list[UUID]:
    return [d.id for d in sorted(docs, key=lambda d: (d.created_at, str(d.id)), reverse=True)]


class TestListing:
    def test_newest_first(self, store: MetadataStore) -> None:
        """Documents come newest first, by created_at then id."""
        entity_id = uuid4()
        docs = [
            upload(store, make_document(entity_id=entity_id, created_at=BASE + timedelta(s)))
            for s in (5, 1, 3, 3, 0)
        ]

        assert [d.id for d in list_all(store, entity_id)] == newest_first(docs)

    def test_only_the_given_entity(self, store: MetadataStore) -> None:
        """Another entity's documents are not listed."""
        entity_id = uuid4()
        mine = upload(store, make_document(entity_id=entity_id))
        upload(store, make_document())

        assert list_all(store, entity_id) == [mine]

    def test_entity_type_filter(self, store: MetadataStore) -> None:
        """With entity_type only documents of that type are listed."""
        entity_id = uuid4()
        deal = upload(store, make_document(entity_id=entity_id, entity_type=EntityType.DEAL))
        upload(store, make_document(entity_id=entity_id, entity_type=EntityType.ISSUER))

        assert list_all(store, entity_id, entity_type=EntityType.DEAL) == [deal]

    def test_archived_hidden_by_default(self, store: MetadataStore) -> None:
        """Without include_archived, archived documents are left out."""
        entity_id = uuid4()
        live = upload(store, make_document(entity_id=entity_id))
        gone = upload(store, make_document(entity_id=entity_id))
        store.archive_document(gone.id, archived_by=None, archived_at=BASE, events=no_events)

        assert list_all(store, entity_id) == [live]

    def test_archived_included_on_request(self, store: MetadataStore) -> None:
        """With include_archived, archived documents are listed too."""
        entity_id = uuid4()
        gone = upload(store, make_document(entity_id=entity_id))
        archived, _ = store.archive_document(
            gone.id, archived_by=None, archived_at=BASE, events=no_events
        )

        assert list_all(store, entity_id, include_archived=True) == [archived]

    def test_pages_cover_every_row_once(self, store: MetadataStore) -> None:
        """Walking pages by keyset yields every document once, in order, despite equal times."""
        entity_id = uuid4()
        docs = [upload(store, make_document(entity_id=entity_id)) for _ in range(7)]
        docs += [
            upload(store, make_document(entity_id=entity_id, created_at=BASE + timedelta(s)))
            for s in (-1, 1, 2)
        ]
        seen: list[UUID] = []
        cursor: PageCursor | None = None

        while True:
            page = store.list_documents(
                entity_id, entity_type=None, include_archived=False, limit=3, after=cursor
            )
            seen += [d.id for d in page]
            if len(page) < 3:
                break
            cursor = PageCursor(created_at=page[-1].created_at, document_id=page[-1].id)

        assert seen == newest_first(docs)

    def test_cursor_is_exclusive(self, store: MetadataStore) -> None:
        """A page after a document starts with the document just older than it."""
        entity_id = uuid4()
        docs = [upload(store, make_document(entity_id=entity_id)) for _ in range(3)]
        ordered = newest_first(docs)
        first = store.get_document(ordered[0])

        page = store.list_documents(
            entity_id,
            entity_type=None,
            include_archived=False,
            limit=10,
            after=PageCursor(created_at=first.created_at, document_id=first.id),
        )

        assert [d.id for d in page] == ordered[1:]

    def test_limit_bounds_the_page(self, store: MetadataStore) -> None:
        """No more than limit documents are returned."""
        entity_id = uuid4()
        for _ in range(4):
            upload(store, make_document(entity_id=entity_id))

        assert len(list_all(store, entity_id, limit=2)) == 2


class TestVerification:
    def test_records_the_outcome(self, store: MetadataStore) -> None:
        """The status, verifier and times are set and read back."""
        stored = upload(store, make_document())
        verifier, at = uuid4(), BASE + timedelta(hours=1)

        updated = store.record_verification(
            stored.id,
            status=DocumentStatus.VERIFIED, calculated_hash=None,
            verified_by=verifier,
            verified_at=at,
            events=no_events,
        )

        assert updated == attrs.evolve(
            stored,
            status=DocumentStatus.VERIFIED,
            verified_by=verifier,
            hash_verified_at=at,
            updated_at=at,
        )
        assert store.get_document(stored.id) == updated

    def test_records_a_mismatch(self, store: MetadataStore) -> None:
        """A mismatch outcome is stored as status mismatch."""
        stored = upload(store, make_document())

        store.record_verification(
            stored.id,
            status=DocumentStatus.MISMATCH, calculated_hash=None,
            verified_by=None,
            verified_at=BASE,
            events=no_events,
        )

        assert store.get_document(stored.id).status is DocumentStatus.MISMATCH

    def test_archived_document_stays_archived(self, store: MetadataStore) -> None:
        """Verifying an archived document records who and when but keeps it archived."""
        stored = upload(store, make_document())
        archived, _ = store.archive_document(
            stored.id, archived_by=None, archived_at=BASE, events=no_events
        )
        verifier, at = uuid4(), BASE + timedelta(hours=1)

        store.record_verification(
            stored.id,
            status=DocumentStatus.VERIFIED, calculated_hash=None,
            verified_by=verifier,
            verified_at=at,
            events=no_events,
        )

        assert store.get_document(stored.id) == attrs.evolve(
            archived, verified_by=verifier, hash_verified_at=at, updated_at=at
        )

    def test_events_see_the_result_and_are_written(self, store: MetadataStore) -> None:
        """The builder receives the updated document and its events reach the outbox."""
        stored = upload(store, make_document())
        recorder = EventRecorder()

        updated = store.record_verification(
            stored.id,
            status=DocumentStatus.VERIFIED, calculated_hash=None,
            verified_by=None,
            verified_at=BASE,
            events=recorder,
        )

        assert recorder.documents == [updated]
        assert pending(store) == 1

    def test_unknown_document_is_not_found(self, store: MetadataStore) -> None:
        """Verifying an unknown id raises DocumentNotFound and writes nothing."""
        recorder = EventRecorder()

        with pytest.raises(DocumentNotFound):
            store.record_verification(
                uuid4(),
                status=DocumentStatus.VERIFIED, calculated_hash=None,
                verified_by=None,
                verified_at=BASE,
                events=recorder,
            )

        assert (recorder.documents, pending(store)) == ([], 0)


class TestArchiveDocument:
    def test_archives_and_reports_the_change(self, store: MetadataStore) -> None:
        """The first archive sets status, who and when, and says it changed something."""
        stored = upload(store, make_document())
        archiver, at = uuid4(), BASE + timedelta(days=1)

        archived, changed = store.archive_document(
            stored.id, archived_by=archiver, archived_at=at, events=no_events
        )

        assert changed is True
        assert archived == attrs.evolve(
            stored,
            status=DocumentStatus.ARCHIVED,
            archived_by=archiver,
            archived_at=at,
            updated_at=at,
        )
        assert store.get_document(stored.id) == archived

    def test_archive_events_are_written(self, store: MetadataStore) -> None:
        """The builder receives the archived document and its events reach the outbox."""
        stored = upload(store, make_document())
        recorder = EventRecorder()

        archived, _ = store.archive_document(
            stored.id, archived_by=None, archived_at=BASE, events=recorder
        )

        assert recorder.documents == [archived]
        assert pending(store) == 1

    def test_second_archive_changes_nothing(self, store: MetadataStore) -> None:
        """Archiving again returns the first archive unchanged and writes no events."""
        stored = upload(store, make_document())
        first, _ = store.archive_document(
            stored.id, archived_by=uuid4(), archived_at=BASE, events=EventRecorder()
        )
        recorder = EventRecorder()

        again, changed = store.archive_document(
            stored.id, archived_by=uuid4(), archived_at=BASE + timedelta(days=1), events=recorder
        )

        assert (again, changed) == (first, False)
        assert store.get_document(stored.id) == first
        assert recorder.documents == []
        assert pending(store) == 1

    def test_unknown_document_is_not_found(self, store: MetadataStore) -> None:
        """Archiving an unknown id raises DocumentNotFound."""
        with pytest.raises(DocumentNotFound):
            store.archive_document(uuid4(), archived_by=None, archived_at=BASE, events=no_events)


class TestArchiveEntity:
    def test_archives_every_live_document_of_the_entity(self, store: MetadataStore) -> None:
        """Live documents of the entity are archived by no one; the count excludes others."""
        entity_id = uuid4()
        live = [upload(store, make_document(entity_id=entity_id)) for _ in range(3)]
        already = upload(store, make_document(entity_id=entity_id))
        store.archive_document(already.id, archived_by=uuid4(), archived_at=BASE, events=no_events)
        bystander = upload(store, make_document())

        count = archive_entity(store, entity_id, "evt-1")

        assert count == 3
        for doc in live:
            loaded = store.get_document(doc.id)
            assert loaded.status is DocumentStatus.ARCHIVED
            assert loaded.archived_by is None
            assert loaded.archived_at == BASE + timedelta(days=1)
        assert store.get_document(already.id).archived_at == BASE
        assert store.get_document(bystander.id) == bystander

    def test_writes_events_for_each_archived_document(self, store: MetadataStore) -> None:
        """The builder is called once per archived document, with it archived."""
        entity_id = uuid4()
        live = [upload(store, make_document(entity_id=entity_id)) for _ in range(2)]
        recorder = EventRecorder()

        archive_entity(store, entity_id, "evt-1", recorder)

        assert sorted(d.id for d in recorder.documents) == sorted(d.id for d in live)
        assert all(d.status is DocumentStatus.ARCHIVED for d in recorder.documents)
        assert pending(store) == 2

    def test_redelivered_event_changes_nothing(self, store: MetadataStore) -> None:
        """A second delivery of the same event returns None and archives nothing."""
        entity_id = uuid4()
        upload(store, make_document(entity_id=entity_id))
        archive_entity(store, entity_id, "evt-1", EventRecorder())
        newcomer = upload(store, make_document(entity_id=entity_id))
        recorder = EventRecorder()

        result = archive_entity(store, entity_id, "evt-1", recorder)

        assert result is None
        assert store.get_document(newcomer.id) == newcomer
        assert recorder.documents == []
        assert pending(store) == 1

    def test_entity_without_documents_is_still_recorded(self, store: MetadataStore) -> None:
        """An event for an entity with no documents archives zero and is remembered."""
        entity_id = uuid4()

        assert archive_entity(store, entity_id, "evt-empty") == 0
        assert archive_entity(store, entity_id, "evt-empty") is None

    def test_frees_the_hashes(self, store: MetadataStore) -> None:
        """After the cascade, the entity's hashes can be uploaded again."""
        stored = upload(store, make_document())
        archive_entity(store, stored.entity_id, "evt-1")

        again = upload(
            store, make_document(entity_id=stored.entity_id, sha256_hash=stored.sha256_hash)
        )

        assert store.find_active_duplicate(stored.entity_id, stored.sha256_hash) == again.id


def insert_documents(backend: StoreBackend, entity_id: UUID, count: int) -> list[UUID]:
    """``count`` live documents of the entity, written straight to the table (oldest first).

    Much faster than ``record_upload`` one by one; the cascade needs no ledger.
    """
    columns = (
        "id", "created_at", "updated_at", "entity_type", "entity_id", "document_type",
        "filename", "mime_type", "size_bytes", "storage_bucket", "storage_key",
        "sha256_hash", "status", "uploaded_by",
    )  # fmt: skip
    ids = [uuid4() for _ in range(count)]
    row = f"({', '.join('?' for _ in columns)})"
    for start in range(0, count, 100):
        chunk = ids[start : start + 100]
        params: list[object] = []
        for offset, doc_id in enumerate(chunk, start):
            at = (BASE + timedelta(microseconds=offset)).isoformat(timespec="microseconds")
            params += [
                str(doc_id), at, at, "issuer", str(entity_id), "kyc", "bulk.pdf",
                "application/pdf", 10, "local", f"documents/{doc_id}",
                hashlib.sha256(doc_id.bytes).hexdigest(), "uploaded", str(uuid4()),
            ]  # fmt: skip
        backend.execute(
            f"INSERT INTO documents ({', '.join(columns)}) VALUES {', '.join([row] * len(chunk))}",
            params,
        )
    return ids


def every_document(
    store: MetadataStore, entity_id: UUID, *, include_archived: bool = False
) -> list[Document]:
    """Every page of the entity's listing."""
    found: list[Document] = []
    after: PageCursor | None = None
    while page := store.list_documents(
        entity_id, entity_type=None, include_archived=include_archived, limit=1000, after=after
    ):
        found += page
        after = PageCursor(page[-1].created_at, page[-1].id)
    return found


def live_count(store: MetadataStore, entity_id: UUID) -> int:
    return len(every_document(store, entity_id))


def is_processed(backend: StoreBackend, event_id: str) -> bool:
    """Whether ``processed_events`` holds the event: a probe row with its id is refused then."""
    try:
        backend.execute(
            "INSERT INTO processed_events (id, created_at, updated_at, event_id, source, action)"
            " VALUES (?, ?, ?, ?, 'probe', 'probe')",
            (str(uuid4()), BASE.isoformat(), BASE.isoformat(), event_id),
        )
    except backend.driver_error:
        return True
    backend.execute(
        "DELETE FROM processed_events WHERE event_id = ? AND source = 'probe'", (event_id,)
    )
    return False


class FailingAfter(EventRecorder):
    """Records events like ``EventRecorder`` and fails on the document after the first ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __call__(self, doc: Document) -> list[OutboxEvent]:
        if len(self.documents) == self.n:
            raise RuntimeError("event builder failed mid-cascade")
        return super().__call__(doc)


class TestArchiveEntityInBatches:
    """Large cascades: one transaction per batch, exactly once across failures and retries."""

    def test_each_batch_commits_on_its_own(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """2,500 documents in batches of 500: each batch is visible to another store on return."""
        entity_id = uuid4()
        insert_documents(store_backend, entity_id, 2500)
        observer = store_backend.open_store()

        seen = []
        while True:
            batch = archive_entity_batch(store, entity_id, "evt-big", batch_size=500)
            assert batch is not None
            seen.append((batch.archived, batch.finished, live_count(observer, entity_id)))
            if batch.finished:
                break

        assert seen == [
            (500, False, 2000), (500, False, 1500), (500, False, 1000), (500, False, 500),
            (500, True, 0),
        ]  # fmt: skip

    def test_processed_row_is_written_with_the_last_batch(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """The event counts as processed only once the batch that leaves nothing live commits."""
        entity_id = uuid4()
        insert_documents(store_backend, entity_id, 2500)

        processed = []
        for _ in range(5):
            archive_entity_batch(store, entity_id, "evt-big", batch_size=500)
            processed.append(is_processed(store_backend, "evt-big"))

        assert processed == [False, False, False, False, True]
        assert archive_entity_batch(store, entity_id, "evt-big", batch_size=500) is None

    def test_failure_after_the_second_batch_keeps_exactly_two_batches(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """A failure in the third batch leaves 1,000 archived with their events, and no row."""
        entity_id = uuid4()
        ids = insert_documents(store_backend, entity_id, 2500)
        failing = FailingAfter(1000)

        with pytest.raises(RuntimeError, match="mid-cascade"):
            archive_entity(store, entity_id, "evt-big", failing, batch_size=500)

        assert live_count(store, entity_id) == 1500
        archived = {
            d.id for d in every_document(store, entity_id, include_archived=True) if d.is_archived
        }
        assert archived == set(ids[:1000])
        assert {d.id for d in failing.documents} == set(ids[:1000])
        assert pending(store) == 1000
        assert not is_processed(store_backend, "evt-big")

    def test_retry_after_a_failure_finishes_without_duplicate_events(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """A redelivery archives only the rest, announcing each document once in all."""
        entity_id = uuid4()
        ids = insert_documents(store_backend, entity_id, 2500)
        with pytest.raises(RuntimeError):
            archive_entity(store, entity_id, "evt-big", FailingAfter(1000), batch_size=500)
        retry = EventRecorder()

        count = archive_entity(store, entity_id, "evt-big", retry, batch_size=500)

        assert count == 1500
        assert [d.id for d in retry.documents] == ids[1000:]
        assert live_count(store, entity_id) == 0
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 5000, BASE, 30)
        announced = [row.event.group_id for row in rows]
        assert sorted(announced) == sorted(str(i) for i in ids)
        assert is_processed(store_backend, "evt-big")
        assert archive_entity(store, entity_id, "evt-big", EventRecorder()) is None

    def test_a_last_full_batch_finishes_the_cascade(self, store: MetadataStore) -> None:
        """When the live documents divide evenly into batches, no empty batch is needed."""
        entity_id = uuid4()
        for _ in range(4):
            upload(store, make_document(entity_id=entity_id))

        first = archive_entity_batch(store, entity_id, "evt-even", batch_size=2)
        second = archive_entity_batch(store, entity_id, "evt-even", batch_size=2)

        assert (first, second) == (CascadeBatch(2, False), CascadeBatch(2, True))

    def test_entity_type_the_vault_does_not_hold_is_recorded(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """An event for a ``fund`` archives nothing and is remembered as processed."""
        bystander = upload(store, make_document())

        assert archive_entity(store, uuid4(), "evt-fund", entity_type="fund") == 0
        assert is_processed(store_backend, "evt-fund")
        assert store.get_document(bystander.id) == bystander

    def test_racing_deliveries_archive_each_document_once(
        self, store_backend: StoreBackend
    ) -> None:
        """Four deliveries of one event on two stores share the batches; nothing is done twice."""
        entity_id = uuid4()
        stores = [store_backend.open_store(), store_backend.open_store()]
        ids = insert_documents(store_backend, entity_id, 400)
        recorders = [EventRecorder() for _ in range(4)]
        barrier = threading.Barrier(4, timeout=30)

        def deliver(i: int) -> int | None:
            barrier.wait()
            return archive_entity(stores[i % 2], entity_id, "evt-race", recorders[i],
                                  batch_size=50)

        with ThreadPoolExecutor(max_workers=4) as pool:
            counts = list(pool.map(deliver, range(4)))

        announced = [d.id for r in recorders for d in r.documents]
        assert sorted(announced) == sorted(ids)
        assert sum(c or 0 for c in counts) == 400
        assert pending(stores[0]) == 400
        assert is_processed(store_backend, "evt-race")

    def test_batch_size_must_be_positive(self, store: MetadataStore) -> None:
        """A batch of zero documents is refused rather than looping for ever."""
        with pytest.raises(ValueError, match="batch_size"):
            archive_entity_batch(store, uuid4(), "evt-zero", batch_size=0)


class TestOutbox:
    def test_appended_events_round_trip(self, store: MetadataStore) -> None:
        """A claimed row carries the event exactly as appended, with no attempts yet."""
        event = make_event()
        store.append_events([event])

        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)

        assert row.event == event
        assert row.attempts == 0

    def test_claims_oldest_first_up_to_limit(self, store: MetadataStore) -> None:
        """Rows are handed out in insertion order, no more than limit."""
        events = [make_event() for _ in range(5)]
        store.append_events(events)

        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 3, BASE, 30)

        assert [r.event.event_id for r in rows] == [e.event_id for e in events[:3]]
        assert [r.id for r in rows] == sorted(r.id for r in rows)

    def test_claims_only_the_given_destinations(self, store: MetadataStore) -> None:
        """Rows for other destinations are not handed out."""
        audit, alert = (
            make_event(Destination.AUDIT_EVENTS),
            make_event(Destination.INTEGRITY_ALERTS),
        )
        store.append_events([make_event(), audit, alert])

        rows = store.claim_outbox(
            [Destination.AUDIT_EVENTS, Destination.INTEGRITY_ALERTS], 10, BASE, 30
        )

        assert [r.event for r in rows] == [audit, alert]

    def test_leased_row_is_not_claimed_before_expiry(self, store: MetadataStore) -> None:
        """A row claimed once is not handed out again while its lease runs."""
        store.append_events([make_event()])
        store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)

        again = store.claim_outbox(
            [Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(seconds=29.999999), 30
        )

        assert again == []

    def test_leased_row_is_claimed_after_expiry(self, store: MetadataStore) -> None:
        """Once its lease has run out, an unacknowledged row is handed out again."""
        event = make_event()
        store.append_events([event])
        store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)

        again = store.claim_outbox(
            [Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(seconds=30), 30
        )

        assert [r.event for r in again] == [event]

    def test_delivered_row_is_never_claimed(self, store: MetadataStore) -> None:
        """A delivered row is not handed out, even after its lease would have expired."""
        store.append_events([make_event()])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)

        store.mark_delivered([row.id], BASE)

        assert store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(1), 30) == []
        assert pending(store) == 0

    def test_parked_row_is_never_claimed(self, store: MetadataStore) -> None:
        """A parked row is not handed out again and counts as parked."""
        store.append_events([make_event()])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)

        store.park(row.id, "message too large", BASE)

        assert store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(1), 30) == []
        assert store.outbox_stats(Destination.DOCUMENT_EVENTS).parked == 1

    def test_failed_row_waits_until_retry_at(self, store: MetadataStore) -> None:
        """A failed row is held until retry_at, then handed out with its attempt counted."""
        store.append_events([make_event()])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        retry_at = BASE + timedelta(minutes=5)

        store.mark_failed(row.id, "queue unreachable", retry_at)

        early = store.claim_outbox(
            [Destination.DOCUMENT_EVENTS], 10, retry_at - timedelta(microseconds=1), 30
        )
        due = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, retry_at, 30)
        assert early == []
        assert [(r.id, r.attempts) for r in due] == [(row.id, 1)]

    def test_failure_releases_the_lease(self, store: MetadataStore) -> None:
        """A failed row due for retry before its lease would end is handed out on time."""
        store.append_events([make_event()])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 300)

        store.mark_failed(row.id, "throttled", BASE + timedelta(seconds=1))

        due = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(seconds=1), 30)
        assert [r.id for r in due] == [row.id]

    def test_stats_count_pending_and_parked(self, store: MetadataStore) -> None:
        """Stats count undelivered unparked rows, parked rows, and the oldest pending time."""
        events = [make_event(created_at=BASE + timedelta(minutes=m)) for m in (3, 1, 2, 4)]
        store.append_events(events)
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        by_event = {r.event.event_id: r.id for r in rows}
        store.mark_delivered([by_event[events[1].event_id]], BASE)
        store.park(by_event[events[3].event_id], "poison", BASE)
        store.append_events([make_event(Destination.AUDIT_EVENTS, created_at=BASE)])

        stats = store.outbox_stats(Destination.DOCUMENT_EVENTS)

        assert (stats.pending, stats.parked) == (2, 1)
        assert stats.oldest_pending_at == BASE + timedelta(minutes=2)

    def test_stats_of_an_empty_destination(self, store: MetadataStore) -> None:
        """A destination with no rows has nothing pending, nothing parked and no oldest time."""
        stats = store.outbox_stats(Destination.INTEGRITY_ALERTS)

        assert (stats.pending, stats.parked, stats.oldest_pending_at) == (0, 0, None)


def in_group(group: str, destination: Destination = Destination.DOCUMENT_EVENTS) -> OutboxEvent:
    return attrs.evolve(make_event(destination), group_id=group)


def claimed(store: MetadataStore, at: datetime, limit: int = 10) -> list[UUID]:
    rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], limit, at, 30)
    return [row.event.event_id for row in rows]


class TestGroupOrder:
    def test_a_group_goes_out_one_row_at_a_time(self, store: MetadataStore) -> None:
        """Of two rows of one group only the earlier is claimed; other groups go meanwhile."""
        first, second, other = in_group("doc-1"), in_group("doc-1"), in_group("doc-2")
        store.append_events([first, second, other])

        assert claimed(store, BASE) == [first.event_id, other.event_id]

    def test_a_later_row_waits_while_the_earlier_is_retried(self, store: MetadataStore) -> None:
        """While the group's earlier row waits for its retry, the later one is not handed out."""
        first, second = in_group("doc-1"), in_group("doc-1")
        store.append_events([first, second])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        retry_at = BASE + timedelta(minutes=5)
        store.mark_failed(row.id, "throttled", retry_at)

        assert claimed(store, BASE + timedelta(minutes=1)) == []
        assert claimed(store, retry_at) == [first.event_id]

    def test_the_later_row_follows_once_the_earlier_is_delivered(
        self, store: MetadataStore
    ) -> None:
        """Delivering the earlier row releases the next of its group."""
        first, second = in_group("doc-1"), in_group("doc-1")
        store.append_events([first, second])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        store.mark_delivered([row.id], BASE)

        assert claimed(store, BASE) == [second.event_id]

    def test_a_parked_row_holds_back_nothing(self, store: MetadataStore) -> None:
        """A row set aside for good does not block the rest of its group."""
        first, second = in_group("doc-1"), in_group("doc-1")
        store.append_events([first, second])
        (row,) = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        store.park(row.id, "too large", BASE)

        assert claimed(store, BASE) == [second.event_id]

    def test_groups_are_per_destination(self, store: MetadataStore) -> None:
        """A document's audit row does not hold back its document event."""
        audit, document = in_group("doc-1", Destination.AUDIT_EVENTS), in_group("doc-1")
        store.append_events([audit, document])

        assert claimed(store, BASE) == [document.event_id]


def delivered_rows(store: MetadataStore, ages: Sequence[int], destination: Destination) -> None:
    """One delivered row per age (minutes before BASE), each delivered at that time."""
    events = [make_event(destination) for _ in ages]
    store.append_events(events)
    rows = store.claim_outbox([destination], len(events), BASE, 30)
    by_event = {row.event.event_id: row.id for row in rows}
    for event, age in zip(events, ages, strict=True):
        store.mark_delivered([by_event[event.event_id]], BASE - timedelta(minutes=age))


class TestPruning:
    def test_prunes_deliveries_older_than_the_cut_oldest_first(
        self, store: MetadataStore
    ) -> None:
        """Rows delivered before the cut go, oldest first and at most ``limit`` at a time."""
        delivered_rows(store, [50, 10, 40, 30, 5], Destination.DOCUMENT_EVENTS)
        cut = BASE - timedelta(minutes=20)

        assert store.prune_delivered([Destination.DOCUMENT_EVENTS], cut, 2) == 2
        assert store.prune_delivered([Destination.DOCUMENT_EVENTS], cut, 2) == 1
        assert store.prune_delivered([Destination.DOCUMENT_EVENTS], cut, 2) == 0
        remaining = store.prune_delivered([Destination.DOCUMENT_EVENTS], BASE, 10)
        assert remaining == 2  # the rows delivered 10 and 5 minutes before BASE

    def test_never_prunes_pending_or_parked_rows(self, store: MetadataStore) -> None:
        """Undelivered rows, leased or failed or parked, stay however old they are."""
        old = BASE - timedelta(days=365)
        events = [make_event(created_at=old) for _ in range(3)]
        store.append_events(events)
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        store.mark_failed(rows[0].id, "down", BASE)
        store.park(rows[1].id, "poison", old)

        assert store.prune_delivered([Destination.DOCUMENT_EVENTS], BASE + timedelta(1), 10) == 0
        stats = store.outbox_stats(Destination.DOCUMENT_EVENTS)
        assert (stats.pending, stats.parked) == (2, 1)

    def test_prunes_only_the_given_destinations(self, store: MetadataStore) -> None:
        """A publisher prunes its own destinations' rows, not another's."""
        delivered_rows(store, [60], Destination.DOCUMENT_EVENTS)
        delivered_rows(store, [60], Destination.INTEGRITY_ALERTS)

        assert store.prune_delivered([Destination.INTEGRITY_ALERTS], BASE, 10) == 1
        assert store.prune_delivered([Destination.DOCUMENT_EVENTS], BASE, 10) == 1


class TestParkedRows:
    def park_three(self, store: MetadataStore) -> list[int]:
        events = [make_event() for _ in range(4)]
        store.append_events(events)
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE, 30)
        for minutes, row in enumerate(rows[:3]):
            store.park(row.id, f"refused {minutes}", BASE + timedelta(minutes=minutes))
        return [row.id for row in rows]

    def test_lists_parked_rows_with_their_error(self, store: MetadataStore) -> None:
        """Parked rows come back oldest first, with when and why they were set aside."""
        ids = self.park_three(store)

        parked = store.parked_rows(10)

        assert [p.row.id for p in parked] == ids[:3]
        assert [p.last_error for p in parked] == ["refused 0", "refused 1", "refused 2"]
        assert parked[2].parked_at == BASE + timedelta(minutes=2)
        assert [p.row.id for p in store.parked_rows(2)] == ids[:2]

    def test_requeued_rows_are_due_again_from_zero_attempts(self, store: MetadataStore) -> None:
        """A requeued row leaves the parked set and is claimed at once, attempts reset."""
        ids = self.park_three(store)
        store.mark_failed(ids[3], "down", BASE + timedelta(days=1))

        requeued = store.requeue_parked([ids[0], ids[3], 987_654])

        assert [p.row.id for p in requeued] == [ids[0]]
        assert [p.row.id for p in store.parked_rows(10)] == ids[1:3]
        due = store.claim_outbox([Destination.DOCUMENT_EVENTS], 10, BASE + timedelta(hours=1), 30)
        assert [(r.id, r.attempts) for r in due] == [(ids[0], 0)]

    def test_dropped_rows_are_gone(self, store: MetadataStore) -> None:
        """Dropping removes parked rows only, and answers them as they were."""
        ids = self.park_three(store)

        dropped = store.drop_parked([ids[1], ids[3]])

        assert [(p.row.id, p.last_error) for p in dropped] == [(ids[1], "refused 1")]
        assert [p.row.id for p in store.parked_rows(10)] == [ids[0], ids[2]]
        assert store.outbox_stats(Destination.DOCUMENT_EVENTS).pending == 1

    def test_nothing_to_requeue_or_drop(self, store: MetadataStore) -> None:
        """Empty lists and unknown ids change nothing."""
        assert store.requeue_parked([]) == [] == store.drop_parked([42])


def run_sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def query_sql(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


class TestSQLiteStore:
    """What only the SQLite store promises: its file, its schema, its driver's errors."""

    @pytest.fixture
    def sqlite_path(self, tmp_path: Path) -> Path:
        return tmp_path / "vault.sqlite3"

    def test_schema_keeps_the_seed_columns(self, sqlite_path: Path) -> None:
        """documents and processed_events have the seed's columns, in the seed's order."""
        store = SQLiteMetadataStore(sqlite_path)
        try:
            store.migrate()
        finally:
            store.close()

        columns = {
            table: [row[1] for row in query_sql(sqlite_path, f"PRAGMA table_info({table})")]
            for table in ("documents", "processed_events")
        }
        assert columns == {
            "documents": SEED_DOCUMENT_COLUMNS,
            "processed_events": SEED_PROCESSED_EVENT_COLUMNS,
        }

    def test_migrate_guards_documents_stored_before_the_claims(self, sqlite_path: Path) -> None:
        """Migrating a database from before the duplicate guard claims its live documents."""
        store = SQLiteMetadataStore(sqlite_path)
        try:
            store.migrate()
            live = upload(store, make_document())
            gone = upload(store, make_document())
            store.archive_document(gone.id, archived_by=None, archived_at=BASE, events=no_events)
            run_sql(sqlite_path, "DELETE FROM document_hash_claims", "DELETE FROM schema_version")

            store.migrate()
        finally:
            store.close()

        claims = query_sql(sqlite_path, "SELECT document_id FROM document_hash_claims")
        assert claims == [(str(live.id),)]

    def test_file_is_in_wal_mode(self, sqlite_path: Path) -> None:
        """The file is in WAL mode after migrate."""
        store = SQLiteMetadataStore(sqlite_path)
        try:
            store.migrate()
        finally:
            store.close()

        assert query_sql(sqlite_path, "PRAGMA journal_mode") == [("wal",)]

    def test_close_releases_every_threads_connection(self, sqlite_path: Path) -> None:
        """close() closes the connections other threads opened (the WAL file goes away)."""
        store = SQLiteMetadataStore(sqlite_path)
        store.migrate()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: upload(store, make_document()), range(4)))
        assert sqlite_path.with_name(sqlite_path.name + "-wal").exists()

        store.close()

        assert not sqlite_path.with_name(sqlite_path.name + "-wal").exists()

    def test_the_duplicate_check_looks_the_pair_up(self, sqlite_path: Path) -> None:
        """The twin lookup searches the (entity_id, sha256_hash) index, not the entity's dates."""
        from vault.adapters.stores import queries
        from vault.adapters.stores.sqlite import SQLiteDialect

        store = SQLiteMetadataStore(sqlite_path)
        store.migrate()
        store.close()
        sql = queries.LIVE_TWINS.compile(SQLiteDialect(), {})
        plan = query_sql(sqlite_path, f"EXPLAIN QUERY PLAN {sql}".replace(":entity_id", "'e'")
                         .replace(":sha256_hash", "'h'"))  # fmt: skip
        assert [row[-1] for row in plan] == [
            "SEARCH documents USING INDEX ix_documents_entity_hash (entity_id=? AND sha256_hash=?)"
        ]

    def test_threads_that_come_and_go_leave_no_connections(self, sqlite_path: Path) -> None:
        """Forty short-lived threads, one call each, leave at most the idle pool open."""
        store = SQLiteMetadataStore(sqlite_path)
        store.migrate()

        def one_call() -> None:
            store.get_document(upload(store, make_document()).id)

        for _ in range(40):
            worker = threading.Thread(target=one_call)
            worker.start()
            worker.join()
        try:
            assert open_files(sqlite_path) <= 2  # one idle connection: the file and its WAL
        finally:
            store.close()
        assert open_files(sqlite_path) == 0

    def test_a_connection_borrowed_at_close_is_closed_when_it_comes_back(
        self, sqlite_path: Path
    ) -> None:
        """close() during a call lets the call finish, then leaves nothing open."""
        store = SQLiteMetadataStore(sqlite_path)
        store.migrate()
        doc = upload(store, make_document())

        def closing_events(stored: Document) -> list[OutboxEvent]:
            store.close()
            return []

        store.archive_document(doc.id, archived_by=None, archived_at=BASE, events=closing_events)

        assert open_files(sqlite_path) == 0
        with pytest.raises(StoreUnavailable, match="closed"):
            store.get_document(doc.id)

    def test_directory_path_is_unavailable(self, tmp_path: Path) -> None:
        """A path naming a directory gives StoreUnavailable caused by the driver's error."""
        store = SQLiteMetadataStore(tmp_path)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                store.migrate()
        finally:
            store.close()

        assert isinstance(caught.value.__cause__, sqlite3.Error)

    def test_unwritable_path_is_unavailable(self, tmp_path: Path) -> None:
        """A path whose parent is a regular file gives StoreUnavailable."""
        blocker = tmp_path / "not-a-directory"
        blocker.write_bytes(b"")
        store = SQLiteMetadataStore(blocker / "vault.sqlite3")
        try:
            with pytest.raises(StoreUnavailable):
                store.ping()
        finally:
            store.close()

    def test_locked_database_is_unavailable(
        self, sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that cannot get the lock within the busy timeout gives StoreUnavailable."""
        monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_SECONDS", 0.01)
        store = SQLiteMetadataStore(sqlite_path)
        holder = sqlite3.connect(sqlite_path, isolation_level=None)
        try:
            store.migrate()
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="locked"):
                upload(store, make_document())
            holder.execute("ROLLBACK")

            stored = upload(store, make_document())
            assert store.get_document(stored.id) == stored
        finally:
            holder.close()
            store.close()

    @pytest.mark.parametrize("call", sorted(STORE_CALLS))
    def test_every_method_maps_driver_errors(self, sqlite_path: Path, call: str) -> None:
        """On a file that is not a database, each method raises StoreUnavailable."""
        sqlite_path.write_bytes(b"this is not a database" * 100)
        store = SQLiteMetadataStore(sqlite_path)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                STORE_CALLS[call](store)
        finally:
            store.close()

        assert isinstance(caught.value.__cause__, sqlite3.Error)


def open_files(database: Path) -> int:
    """How many descriptors of this process are open on the database or its WAL."""
    names = {str(database), f"{database}-wal"}
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if str(fd.readlink()) in names:
                count += 1
    return count

