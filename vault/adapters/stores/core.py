"""The ``MetadataStore`` written once: every method both SQL dialects share.

``SqlMetadataStore`` holds the methods of the ``MetadataStore`` Protocol;
the statements they run are ``queries.py`` (``Q``, with ``$name``
parameters, compiled per dialect by ``sql.py``). A dialect
subclass (``sqlite.py``, ``postgres.py``) supplies what truly differs:
connections, how a transaction starts, the schema and its migrations, the
locks that serialise writers across processes, a few fragments
(``{for_update}``, ``{skip_locked}``) and how values are bound.

*Transactions*, as a dialect provides them:

- ``_reading``: plain reads, each a statement of its own;
- ``_statement``: a write that is one statement (it commits by itself);
- ``_transaction``: several statements that commit together or not at all,
  rolled back on any error, including one raised by the caller's event
  builder.

*Locking*, where the reasoning lives in the query it protects:

- the duplicate guard is the primary key of ``document_hash_claims``;
- a change writes its log leaf pending and takes no log lock; integration
  (``ledger.py``) locks the tree row, one batch at a time;
- cascade batches of one event call ``_lock_cascade`` before checking
  ``processed_events``;
- a row a transaction is about to change is read ``{for_update}``, and
  outbox rows are claimed ``{skip_locked}`` (both empty on SQLite).

*Domain rules* are not decided here: what a verification or an archive
does to a document is ``vault.domain.lifecycle``; the store applies it
inside the transaction and writes the events the caller builds.

*Errors*: each dialect maps its driver's errors to ``StoreUnavailable`` in
the contexts above; ``DocumentNotFound`` and ``DuplicateDocument`` are
raised here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import attrs

from vault.adapters.stores import queries as q
from vault.adapters.stores.dispositions import SqlDispositions
from vault.adapters.stores.freezes import freeze_for_mismatch
from vault.adapters.stores.incidents import join_incident
from vault.adapters.stores.ledger import insert_leaves
from vault.adapters.stores.outbox import MAX_IDS_PER_STATEMENT, insert_events
from vault.adapters.stores.retention import record_retention
from vault.adapters.stores.rows import (
    as_datetime,
    as_uuid,
    document_from_row,
    document_values,
    ledger_entry_from_row,
)
from vault.adapters.stores.sql import Dialect, Session, chunks
from vault.domain import lifecycle
from vault.domain.errors import DocumentNotFound, DuplicateDocument, StoreUnavailable
from vault.domain.incidents import with_incident
from vault.domain.leaf import LeafKind
from vault.domain.ledger import entry_hash_from_reference
from vault.domain.log import PendingLeaf, leaf_for, reference_of
from vault.domain.models import Document, DocumentStatus, EntityType, LedgerEntry
from vault.ports import CascadeBatch, EventsFor, PageCursor

CLAIM_ATTEMPTS: Final = 3
"""How often a duplicate claim is retried when its holder vanished (was archived)
between the conflict and the look-up."""


class SqlMetadataStore(SqlDispositions):
    """The shared half of every SQL ``MetadataStore``; a dialect subclass completes it."""

    dialect: Dialect

    # -- what a dialect supplies -------------------------------------------

    def _lock_cascade(self, db: Session, event_id: str) -> None:
        """Hold ``event_id``'s cascade until commit, against every other delivery."""
        raise NotImplementedError

    # -- documents ---------------------------------------------------------

    def find_active_duplicate(self, entity_id: uuid.UUID, sha256_hash: str) -> uuid.UUID | None:
        with self._reading("find_active_duplicate") as db:
            return _oldest_twin(db, entity_id=entity_id, sha256_hash=sha256_hash)

    def record_upload(self, doc: Document, events: EventsFor, *, unique_hash: bool) -> Document:
        """Register ``doc`` with its ledger entry and events, in one transaction.

        With ``unique_hash`` the claim row is the guard: its primary key
        admits one live document per (entity_id, sha256_hash) whatever the
        interleaving, across processes. A live duplicate without a claim
        (uploaded while the guard was off) is refused as well.
        """
        with self._transaction("record_upload") as db:
            if unique_hash:
                _claim_hash(db, doc)
            registered = leaf_for(doc, LeafKind.REGISTERED, doc.created_at)
            leaf = PendingLeaf.of(registered, doc.created_at)
            stored = attrs.evolve(doc, on_chain_reference=reference_of(leaf.leaf))
            outbox = events(stored)
            with db.pipeline():
                insert_leaves(db, [leaf])
                db.execute(q.DOCUMENT_INSERT, **document_values(stored))
                insert_events(db, outbox)
            record_retention(db, stored)
        return stored

    def get_document(self, document_id: uuid.UUID) -> Document:
        with self._reading("get_document") as db:
            return _load_document(db, document_id)

    def documents_present(self, document_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        present: set[uuid.UUID] = set()
        with self._reading("documents_present") as db:
            for chunk in chunks(list(document_ids), MAX_IDS_PER_STATEMENT):
                present.update(as_uuid(row["id"]) for row in db.all(q.PRESENT, ids=list(chunk)))
        return present

    def list_documents(
        self,
        entity_id: uuid.UUID,
        *,
        entity_type: EntityType | None,
        include_archived: bool,
        limit: int,
        after: PageCursor | None,
    ) -> list[Document]:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        params: dict[str, object] = {"entity_id": entity_id, "limit": limit}
        if entity_type is not None:
            params["entity_type"] = EntityType(entity_type)
        if after is not None:
            params["after_created_at"] = after.created_at
            params["after_id"] = after.document_id
        query = q.page_query(entity_type is not None, include_archived, after is not None)
        with self._reading("list_documents") as db:
            rows = db.all(query, **params)
        return [document_from_row(row) for row in rows]

    # -- ledger --------------------------------------------------------------

    def ledger_entry(self, reference: str) -> LedgerEntry | None:
        entry_hash = entry_hash_from_reference(reference)
        if entry_hash is None:
            return None
        with self._reading("ledger_entry") as db:
            row = db.one(q.LEDGER_BY_HASH, entry_hash=entry_hash)
        return None if row is None else ledger_entry_from_row(row)

    def ledger_predecessor(self, entry: LedgerEntry) -> LedgerEntry | None:
        if entry.seq <= 1:
            return None
        with self._reading("ledger_predecessor") as db:
            row = db.one(q.LEDGER_BY_SEQ, seq=entry.seq - 1)
        return None if row is None else ledger_entry_from_row(row)

    # -- state changes -------------------------------------------------------

    def record_verification(
        self,
        document_id: uuid.UUID,
        *,
        status: DocumentStatus,
        calculated_hash: str | None,
        verified_by: uuid.UUID | None,
        verified_at: datetime,
        events: EventsFor,
        freeze_on_mismatch: bool = False,
    ) -> Document:
        status = DocumentStatus(status)
        kind = LeafKind.VERIFIED if status is DocumentStatus.VERIFIED else LeafKind.MISMATCH
        with self._transaction("record_verification") as db:
            current = _load_document(db, document_id, for_update=True)
            updated = lifecycle.verified(current, status, verified_by, verified_at)
            db.execute(
                q.VERIFICATION,
                status=updated.status,
                verified_by=verified_by,
                at=verified_at,
                id=document_id,
            )
            sha256 = calculated_hash if kind is LeafKind.MISMATCH else None
            insert_leaves(db, [PendingLeaf.of(leaf_for(current, kind, verified_at, sha256),
                                              verified_at)])
            announced = events(updated)
            if kind is LeafKind.MISMATCH:
                incident_id = join_incident(db, current, calculated_hash, verified_at)
                announced = with_incident(announced, incident_id)
                if freeze_on_mismatch:
                    freeze_for_mismatch(db, current.entity_id, incident_id, verified_at)
            insert_events(db, announced)
        return updated

    def archive_document(
        self,
        document_id: uuid.UUID,
        *,
        archived_by: uuid.UUID | None,
        archived_at: datetime,
        events: EventsFor,
    ) -> tuple[Document, bool]:
        with self._transaction("archive_document") as db:
            current = _load_document(db, document_id, for_update=True)
            updated = lifecycle.archived(current, archived_by, archived_at)
            if updated is None:
                return current, False
            db.execute(q.ARCHIVE, archived_by=archived_by, at=archived_at, id=document_id)
            db.execute(q.CLAIM_RELEASE, document_id=document_id)
            insert_leaves(db, [_archived_leaf(current, archived_at)])
            insert_events(db, events(updated))
        return updated, True

    def archive_entity(
        self,
        *,
        event_id: str,
        source: str,
        action: str,
        entity_id: uuid.UUID,
        entity_type: str,
        archived_at: datetime,
        events: EventsFor,
        batch_size: int,
    ) -> CascadeBatch | None:
        """One batch of the cascade, in one transaction.

        Batches of one event run one at a time, in any process: a
        concurrent delivery waits in ``_lock_cascade``, then its next
        statement sees what the holder committed. On SQLite the write lock
        is held for the whole batch, so ``batch_size`` also bounds how long
        uploads and other writers wait behind a cascade.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        with self._transaction("archive_entity") as db:
            self._lock_cascade(db, event_id)
            if db.one(q.PROCESSED, event_id=event_id) is not None:
                return None
            archived = sorted(
                (
                    document_from_row(row)
                    for row in db.all(
                        q.ARCHIVE_BATCH, at=archived_at, entity_id=entity_id, limit=batch_size
                    )
                ),
                key=lambda d: (d.created_at, d.id),
            )
            # Only the claims of the documents archived here; the entity's
            # other live documents keep their guard until their batch.
            db.many(q.CLAIM_RELEASE, [{"document_id": doc.id} for doc in archived])
            insert_leaves(db, [_archived_leaf(doc, archived_at) for doc in archived])
            insert_events(db, [event for doc in archived for event in events(doc)])
            finished = db.one(q.LIVE_LEFT, entity_id=entity_id) is None
            if finished:
                db.execute(
                    q.MARK_PROCESSED,
                    id=uuid.uuid4(),
                    at=archived_at,
                    event_id=event_id,
                    source=source,
                    action=action,
                    entity_id=str(entity_id),
                    entity_type=entity_type,
                )
        return CascadeBatch(archived=len(archived), finished=finished)


def _archived_leaf(doc: Document, at: datetime) -> PendingLeaf:
    return PendingLeaf.of(leaf_for(doc, LeafKind.ARCHIVED, at), at)


def _load_document(db: Session, document_id: uuid.UUID, *, for_update: bool = False) -> Document:
    row = db.one(q.DOCUMENT_FOR_UPDATE if for_update else q.DOCUMENT, id=document_id)
    if row is None:
        raise DocumentNotFound(document_id)
    return document_from_row(row)


def _oldest_twin(db: Session, **pair: object) -> uuid.UUID | None:
    """The oldest live document of (entity_id, sha256_hash), if any."""
    twins = [
        (as_datetime(row["created_at"]), as_uuid(row["id"])) for row in db.all(q.LIVE_TWINS, **pair)
    ]
    return min(twins)[1] if twins else None


def _claim_hash(db: Session, doc: Document) -> None:
    pair = {"entity_id": doc.entity_id, "sha256_hash": doc.sha256_hash}
    for _ in range(CLAIM_ATTEMPTS):
        if db.one(q.CLAIM, document_id=doc.id, **pair) is not None:
            break
        holder = db.one(q.CLAIM_HOLDER, **pair)
        if holder is not None:
            raise DuplicateDocument(as_uuid(holder["document_id"]))
        # The holder was archived in between: the pair is free again.
    else:
        raise StoreUnavailable("duplicate guard kept conflicting without a claim holder")
    unguarded = _oldest_twin(db, **pair)
    if unguarded is not None:
        raise DuplicateDocument(unguarded)
