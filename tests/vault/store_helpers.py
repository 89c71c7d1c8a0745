"""What the metadata-store suites share: the backends behind the contract, and builders.

``StoreBackend`` describes one database behind the store (``conftest`` makes one
per backend). The builders make documents and events, run whole cascades, and
name every store call, for the contract suite (``test_metadata_store.py``) and
the PostgreSQL suite (``test_postgres_store.py``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import attrs

from vault.domain.errors import DuplicateDocument
from vault.domain.events import Destination, OutboxEvent, document_event
from vault.domain.log import SignedCheckpoint, StoredLeaf
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType, LedgerEntry
from vault.ports import CascadeBatch, MetadataStore

T = TypeVar("T")


@attrs.frozen
class StoreBackend:
    """One database behind the store, and ways to reach it around the store."""

    name: str
    open_store: Callable[[], MetadataStore]
    """Another migrated store on the same database (closed at teardown)."""
    execute: Callable[[str, Sequence[object]], None]
    """Run one statement straight through the driver, committing it."""
    driver_error: type[Exception]
    """What the driver raises when the database refuses a statement."""


BASE = datetime(2025, 10, 23, 12, 34, 56, 789123, tzinfo=UTC)


def make_document(
    *,
    entity_id: UUID | None = None,
    sha256_hash: str | None = None,
    created_at: datetime = BASE,
    **changes: Any,
) -> Document:
    doc_id = uuid4()
    doc = Document(
        id=doc_id,
        entity_type=EntityType.ISSUER,
        entity_id=entity_id or uuid4(),
        token_id=None,
        document_type=DocumentType.KYC,
        filename="passport.pdf",
        mime_type="application/pdf",
        size_bytes=1234,
        storage_bucket="local",
        storage_key=f"documents/{doc_id}",
        storage_version_id=None,
        sha256_hash=sha256_hash or hashlib.sha256(doc_id.bytes).hexdigest(),
        status=DocumentStatus.UPLOADED,
        uploaded_by=uuid4(),
        verified_by=None,
        archived_by=None,
        archived_at=None,
        hash_verified_at=None,
        on_chain_reference=None,
        metadata=None,
        created_at=created_at,
        updated_at=created_at,
    )
    return attrs.evolve(doc, **changes)


def no_events(doc: Document) -> list[OutboxEvent]:
    return []


class EventRecorder:
    """An ``EventsFor`` that remembers each document it was given and emits one event."""

    def __init__(self) -> None:
        self.documents: list[Document] = []

    def __call__(self, doc: Document) -> list[OutboxEvent]:
        self.documents.append(doc)
        return [document_event("document.recorded", doc, doc.updated_at)]


def failing_events(doc: Document) -> list[OutboxEvent]:
    raise RuntimeError("event builder failed")


def make_event(
    destination: Destination = Destination.DOCUMENT_EVENTS, created_at: datetime = BASE
) -> OutboxEvent:
    event_id = uuid4()
    return OutboxEvent(
        event_id=event_id,
        destination=destination,
        body={"event_id": str(event_id), "payload": {"nested": [1, "é"]}},
        attributes={"event_type": "document.recorded"},
        group_id=str(uuid4()),
        created_at=created_at,
    )


def upload(store: MetadataStore, doc: Document, *, unique_hash: bool = True) -> Document:
    return store.record_upload(doc, no_events, unique_hash=unique_hash)


def pending(store: MetadataStore, destination: Destination = Destination.DOCUMENT_EVENTS) -> int:
    return store.outbox_stats(destination).pending


def leaf_of(store: MetadataStore, doc: Document) -> StoredLeaf:
    """The document's registered leaf, as stored."""
    leaf = store.registered_leaf(doc.id)
    assert leaf is not None
    return leaf


def integrate_all(store: MetadataStore, batch: int = 256) -> int:
    """Integrate every pending leaf; the tree's size afterwards."""
    while store.integrate_leaves(batch, BASE).added:
        pass
    return store.ledger_head().size


def race(
    calls: Sequence[Callable[[], T]],
    catching: tuple[type[Exception], ...] = (DuplicateDocument,),
) -> list[T | Exception]:
    """Run every call in its own thread, released together by a barrier; each call's
    result, or the exception of ``catching`` it raised (any other exception propagates)."""
    barrier = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], T]) -> T | Exception:
        barrier.wait()
        try:
            return call()
        except catching as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def list_all(store: MetadataStore, entity_id: UUID, **options: Any) -> list[Document]:
    query: dict[str, Any] = {"entity_type": None, "include_archived": False, "limit": 1000}
    query.update(options)
    return store.list_documents(entity_id, after=None, **query)


def archive_entity(
    store: MetadataStore,
    entity_id: UUID,
    event_id: str,
    events: Any = no_events,
    *,
    batch_size: int = 500,
    entity_type: str = "issuer",
) -> int | None:
    """The whole cascade, batch after batch as the archiver runs it.

    The number archived, or None when the event had been processed before.
    """
    count = 0
    first = True
    while True:
        batch = archive_entity_batch(
            store, entity_id, event_id, events, batch_size=batch_size, entity_type=entity_type
        )
        if batch is None:
            return None if first else count
        first = False
        count += batch.archived
        if batch.finished:
            return count


def archive_entity_batch(
    store: MetadataStore,
    entity_id: UUID,
    event_id: str,
    events: Any = no_events,
    *,
    batch_size: int = 500,
    entity_type: str = "issuer",
) -> CascadeBatch | None:
    return store.archive_entity(
        event_id=event_id,
        source="entity_permissions_core",
        action="entity.deleted",
        entity_id=entity_id,
        entity_type=entity_type,
        archived_at=BASE + timedelta(days=1),
        events=events,
        batch_size=batch_size,
    )


SEED_DOCUMENT_COLUMNS = [
    "id", "created_at", "updated_at", "entity_type", "entity_id", "token_id",
    "document_type", "filename", "mime_type", "size_bytes", "storage_bucket",
    "storage_key", "storage_version_id", "sha256_hash", "hash_verified_at", "status",
    "on_chain_reference", "uploaded_by", "verified_by", "archived_by", "archived_at",
    "metadata",
]  # fmt: skip
SEED_PROCESSED_EVENT_COLUMNS = [
    "id", "created_at", "updated_at", "event_id", "source", "action", "entity_id",
    "entity_type",
]  # fmt: skip

# Calls that touch the database, for checking that each maps driver errors.
STORE_CALLS: dict[str, Callable[[MetadataStore], object]] = {
    "migrate": lambda s: s.migrate(),
    "ping": lambda s: s.ping(),
    "find_active_duplicate": lambda s: s.find_active_duplicate(uuid4(), "ab" * 32),
    "record_upload": lambda s: upload(s, make_document()),
    "get_document": lambda s: s.get_document(uuid4()),
    "list_documents": lambda s: list_all(s, uuid4()),
    "ledger_entry": lambda s: s.ledger_entry("0x" + "a" * 64),
    "ledger_predecessor": lambda s: s.ledger_predecessor(
        LedgerEntry(2, "a" * 64, "b" * 64, uuid4(), "c" * 64, BASE)
    ),
    "record_verification": lambda s: s.record_verification(
        uuid4(), status=DocumentStatus.VERIFIED, calculated_hash=None, verified_by=None,
        verified_at=BASE, events=no_events,
    ),
    "ledger_head": lambda s: s.ledger_head(),
    "pending_leaves": lambda s: s.pending_leaves(),
    "integrate_leaves": lambda s: s.integrate_leaves(256, BASE),
    "ledger_tiles": lambda s: s.ledger_tiles([(0, 0)]),
    "ledger_leaves": lambda s: s.ledger_leaves(0, 256),
    "registered_leaf": lambda s: s.registered_leaf(uuid4()),
    "add_checkpoint": lambda s: s.add_checkpoint(SignedCheckpoint(1, b"r" * 32, "n\n", BASE)),
    "latest_checkpoint": lambda s: s.latest_checkpoint(),
    "checkpoint_at": lambda s: s.checkpoint_at(1),
    "archive_document": lambda s: s.archive_document(
        uuid4(), archived_by=None, archived_at=BASE, events=no_events
    ),
    "archive_entity": lambda s: archive_entity(s, uuid4(), "evt"),
    "append_events": lambda s: s.append_events([make_event()]),
    "claim_outbox": lambda s: s.claim_outbox([Destination.AUDIT_EVENTS], 1, BASE, 1),
    "mark_delivered": lambda s: s.mark_delivered([1], BASE),
    "mark_failed": lambda s: s.mark_failed(1, "x", BASE),
    "park": lambda s: s.park(1, "x", BASE),
    "outbox_stats": lambda s: s.outbox_stats(Destination.AUDIT_EVENTS),
}  # fmt: skip
