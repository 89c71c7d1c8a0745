"""Dispositions in the SQL store: proposed, approved, executed with their certificate.

Every step is one transaction with its audit event, and the steps that
decide whether a document may go (proposal, both halves of execution)
first take the *records lock* (``_lock_records``: PostgreSQL's advisory
lock, SQLite's write lock), which placing a hold or adding to one takes
too: a hold and a disposition never both believe they came first.

Execution is two transactions, so a crash loses nothing:

1. *plan*: retention and holds are checked, every stored version of each
   object is listed with its lock and written into the certificate, and
   the disposition becomes ``executing``. A version the storage would
   refuse to delete now is ``StorageLocked`` before anything is deleted.
2. *execute*: checked again, then each object's versions are destroyed
   (``BlobStore.destroy``) inside the transaction, and each row becomes a
   tombstone with its ``disposed`` leaf and ``document.disposed`` events.
   A refusal from the storage rolls the transaction back: nothing is
   marked disposed, and when nothing was destroyed yet the disposition goes
   back to ``approved`` (its plan cleared). A crash after some bytes went leaves the disposition
   ``executing`` with its plan; executing it again destroys what is left
   (a second ``destroy`` of what is gone deletes nothing) and finishes.

The blob calls run in the caller's worker thread while the transaction
is open; on PostgreSQL the records lock then holds hold changes (not
uploads) for that long.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from vault.adapters.stores import queries as q
from vault.adapters.stores.holds import active_holds
from vault.adapters.stores.ledger import insert_leaves
from vault.adapters.stores.outbox import insert_events
from vault.adapters.stores.retention import RETENTION_OF, retention_from_row
from vault.adapters.stores.rows import (
    as_datetime,
    as_optional_datetime,
    as_optional_uuid,
    as_uuid,
    document_from_row,
)
from vault.adapters.stores.sql import Q, Row, Session, newest_first
from vault.adapters.stores.storage_locks import SqlStorageLocks
from vault.domain import lifecycle
from vault.domain.disposition import (
    DisposedVersion,
    Disposition,
    DispositionItem,
    DispositionNotFound,
    DispositionOutOfTurn,
    DispositionStatus,
    EligibleDocument,
    NotDisposable,
    Proposal,
    blocked_at_execution,
    check_approval,
    check_execution,
)
from vault.domain.errors import DocumentNotFound
from vault.domain.events import OutboxEvent, audit_event, disposal_events
from vault.domain.leaf import LeafKind
from vault.domain.locks import StorageLocked, StoredVersion
from vault.domain.log import PendingLeaf, leaf_for
from vault.domain.models import Actor, Document
from vault.domain.retention import DocumentRetention
from vault.ports import BlobStore
from vault.ports.pages import PageCursor

_DISPOSITION = (
    "SELECT disposition_id, status, reason, proposed_at, proposed_by, proposed_role,"
    " approved_at, approved_by, approved_role, holds_checked_at, executed_at, executed_by,"
    " executed_role FROM dispositions"
)
DISPOSITION = Q(f"{_DISPOSITION} WHERE disposition_id = $id")
DISPOSITION_FOR_UPDATE = Q(f"{_DISPOSITION} WHERE disposition_id = $id" "{for_update}")
INSERT = Q(
    "INSERT INTO dispositions (disposition_id, status, reason, proposed_at, proposed_by,"
    " proposed_role) VALUES ($id, 'proposed', $reason, $at, $by, $role)"
)
ITEM_INSERT = Q(
    "INSERT INTO disposition_items (disposition_id, document_id, position, entity_id,"
    " entity_type, document_type, filename, sha256_hash, size_bytes, storage_bucket,"
    " storage_key, policy_version, retention_mode, retain_until)"
    " VALUES ($id, $document_id, $position, $entity_id, $entity_type, $document_type,"
    " $filename, $sha256_hash, $size_bytes, $storage_bucket, $storage_key, $policy_version,"
    " $retention_mode, $retain_until)"
)
ITEMS = Q(
    "SELECT i.document_id, i.entity_id, i.entity_type, i.document_type, i.filename,"
    " i.sha256_hash, i.size_bytes, i.storage_bucket, i.storage_key, i.policy_version,"
    " i.retention_mode, i.retain_until, i.storage_versions, i.leaf_hash, l.leaf_index"
    " FROM disposition_items i LEFT JOIN ledger_leaves l ON l.leaf_hash = i.leaf_hash"
    " WHERE i.disposition_id = $id ORDER BY i.position"
)
APPROVE = Q(
    "UPDATE dispositions SET status = 'approved', approved_at = $at, approved_by = $by,"
    " approved_role = $role WHERE disposition_id = $id"
)
PLANNED = Q(
    "UPDATE disposition_items SET storage_versions = $versions"
    " WHERE disposition_id = $id AND document_id = $document_id"
)
EXECUTING = Q(
    "UPDATE dispositions SET status = 'executing', holds_checked_at = $at"
    " WHERE disposition_id = $id"
)
UNPLANNED = Q("UPDATE disposition_items SET storage_versions = NULL WHERE disposition_id = $id")
UNEXECUTING = Q(
    "UPDATE dispositions SET status = 'approved', holds_checked_at = NULL"
    " WHERE disposition_id = $id AND status = 'executing'"
)
ITEM_DONE = Q(
    "UPDATE disposition_items SET storage_versions = $versions, leaf_hash = $leaf_hash"
    " WHERE disposition_id = $id AND document_id = $document_id"
)
EXECUTED = Q(
    "UPDATE dispositions SET status = 'executed', holds_checked_at = $at, executed_at = $at,"
    " executed_by = $by, executed_role = $role WHERE disposition_id = $id"
)
TOMBSTONE = Q(
    "UPDATE documents SET status = 'disposed', archived_at = coalesce(archived_at, $at),"
    " updated_at = $at WHERE id = $id"
)
# Other dispositions, not yet executed, that name the document.
PENDING_FOR = Q(
    "SELECT i.disposition_id AS disposition_id FROM disposition_items i"
    " JOIN dispositions d ON d.disposition_id = i.disposition_id"
    " WHERE i.document_id = $document_id AND d.status <> 'executed'"
    " AND i.disposition_id <> $id ORDER BY d.proposed_at, i.disposition_id"
)
# Documents whose retention is over and that no active hold covers, soonest expired first.
ELIGIBLE = Q(
    "SELECT r.document_id AS document_id, d.entity_id AS entity_id,"
    " d.entity_type AS entity_type, r.document_type AS document_type,"
    " d.sha256_hash AS sha256_hash, d.status AS status, r.policy_version AS policy_version,"
    " r.mode AS mode, r.retain_until AS retain_until, p.on_expiry AS on_expiry"
    " FROM document_retention r JOIN documents d ON d.id = r.document_id"
    " JOIN retention_policies p"
    "   ON p.document_type = r.document_type AND p.version = r.policy_version"
    " WHERE r.retain_until <= $now AND d.status <> 'disposed'"
    " AND (r.retain_until > $after_at"
    "      OR (r.retain_until = $after_at AND r.document_id > $after_id))"
    " AND NOT EXISTS (SELECT 1 FROM legal_hold_items i JOIN legal_holds h ON h.hold_id = i.hold_id"
    "   WHERE h.status = 'active' AND i.removed_at IS NULL"
    "   AND ((i.kind = 'document' AND i.target_id = d.id)"
    "        OR (i.kind = 'entity' AND i.target_id = d.entity_id)))"
    " ORDER BY r.retain_until, r.document_id LIMIT $limit"
)
NO_ID = uuid.UUID(int=0)


class SqlDispositions(SqlStorageLocks):
    """Dispositions of every SQL ``MetadataStore``."""

    def propose_disposition(
        self, proposal: Proposal, *, actor: Actor, correlation_id: str | None, at: datetime
    ) -> Disposition:
        """A new proposed disposition; ``DocumentNotFound``, or ``NotDisposable`` naming
        every document that retention, a hold or another pending disposition keeps."""
        disposition_id = uuid.uuid4()
        with self._transaction("propose_disposition") as db:
            self._lock_records(db)
            docs = [_document(db, d) for d in proposal.document_ids]
            kept_by = _require_disposable(db, disposition_id, docs, at)
            db.execute(INSERT, id=disposition_id, reason=proposal.reason, at=at, by=actor.id,
                       role=_role(actor))
            for position, doc in enumerate(docs):
                kept = kept_by[doc.id]
                db.execute(
                    ITEM_INSERT, id=disposition_id, document_id=doc.id, position=position,
                    entity_id=doc.entity_id, entity_type=doc.entity_type.value,
                    document_type=doc.document_type.value, filename=doc.filename,
                    sha256_hash=doc.sha256_hash, size_bytes=doc.size_bytes,
                    storage_bucket=doc.storage_bucket, storage_key=doc.storage_key,
                    policy_version=None if kept is None else kept.policy_version,
                    retention_mode=None if kept is None else kept.mode.value,
                    retain_until=None if kept is None else kept.retain_until,
                )
            insert_events(db, [_event("disposition.proposed", disposition_id, actor, {
                "reason": proposal.reason,
                "document_ids": [str(d) for d in proposal.document_ids],
            }, correlation_id, at)])
            return _load(db, disposition_id)

    def approve_disposition(
        self, disposition_id: uuid.UUID, *, actor: Actor, correlation_id: str | None,
        at: datetime,
    ) -> Disposition:
        """Approved by ``actor``: ``DispositionOutOfTurn`` unless proposed, ``Forbidden``
        for its proposer."""
        with self._transaction("approve_disposition") as db:
            current = _load(db, disposition_id, for_update=True)
            check_approval(current.status, current.proposed_by, actor)
            db.execute(APPROVE, id=disposition_id, at=at, by=actor.id, role=_role(actor))
            insert_events(db, [_event("disposition.approved", disposition_id, actor, {
                "reason": current.reason,
                "document_ids": [str(i.document_id) for i in current.items],
            }, correlation_id, at)])
            return _load(db, disposition_id)

    def execute_disposition(
        self, disposition_id: uuid.UUID, blobs: BlobStore, *, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> Disposition:
        """Plan, then destroy and record (see the module's docstring). Blocks on ``blobs``.

        ``DispositionOutOfTurn`` unless approved (or executing), ``NotDisposable`` when
        retention or a hold keeps a document now, ``StorageLocked`` when the storage would
        refuse: in each case no document is marked disposed.
        """
        with self._transaction("plan_disposition") as db:
            self._lock_records(db)
            current = _load(db, disposition_id, for_update=True)
            check_execution(current.status)
            resumed = current.status is DispositionStatus.EXECUTING
            docs = [_document(db, i.document_id) for i in current.items]
            _require_disposable(db, disposition_id, docs, at)
            for doc, item in zip(docs, current.items, strict=True):
                listed = blobs.stored_versions(doc.storage_key)
                _refuse_locked(doc, listed, at)
                planned = _merged(item.storage_versions, listed)
                db.execute(PLANNED, id=disposition_id, document_id=doc.id,
                           versions=_versions_json(planned))
            db.execute(EXECUTING, id=disposition_id, at=at)
        destroyed: list[uuid.UUID] = []
        try:
            return self._destroy_and_record(disposition_id, blobs, destroyed, actor=actor,
                                            correlation_id=correlation_id, at=at)
        except StorageLocked:
            if not destroyed and not resumed:  # refused before anything went: approved again
                with self._transaction("unplan_disposition") as db:
                    db.execute(UNPLANNED, id=disposition_id)
                    db.execute(UNEXECUTING, id=disposition_id)
            raise

    def _destroy_and_record(
        self, disposition_id: uuid.UUID, blobs: BlobStore, destroyed: list[uuid.UUID], *,
        actor: Actor, correlation_id: str | None, at: datetime,
    ) -> Disposition:
        with self._transaction("execute_disposition") as db:
            self._lock_records(db)
            current = _load(db, disposition_id, for_update=True)
            if current.status is not DispositionStatus.EXECUTING:
                raise DispositionOutOfTurn("the disposition was executed already")
            docs = [_document(db, i.document_id) for i in current.items]
            _require_disposable(db, disposition_id, docs, at)
            events: list[OutboxEvent] = []
            for doc, item in zip(docs, current.items, strict=True):
                gone = blobs.destroy(doc.storage_key)
                destroyed.append(doc.id)
                versions = _merged(item.storage_versions, gone)
                leaf = PendingLeaf.of(leaf_for(doc, LeafKind.DISPOSED, at), at)
                hashed = leaf.leaf_hash
                db.execute(TOMBSTONE, id=doc.id, at=at)
                db.execute(q.CLAIM_RELEASE, document_id=doc.id)
                insert_leaves(db, [leaf])
                db.execute(ITEM_DONE, id=disposition_id, document_id=doc.id,
                           versions=_versions_json(versions), leaf_hash=hashed)
                events.extend(disposal_events(
                    lifecycle.disposed(doc, at), actor, disposition_id, current.reason,
                    {"storage_versions": [_version_json(v) for v in versions],
                     "leaf_hash": hashed},
                    correlation_id, at,
                ))
            db.execute(EXECUTED, id=disposition_id, at=at, by=actor.id, role=_role(actor))
            events.append(_event("disposition.executed", disposition_id, actor, {
                "reason": current.reason,
                "document_ids": [str(d.id) for d in docs],
            }, correlation_id, at))
            insert_events(db, events)
            return _load(db, disposition_id)

    def get_disposition(self, disposition_id: uuid.UUID) -> Disposition:
        with self._reading("get_disposition") as db:
            return _load(db, disposition_id)

    def list_dispositions(
        self, *, status: DispositionStatus | None, limit: int, after: PageCursor | None
    ) -> list[Disposition]:
        query, params = newest_first(
            _DISPOSITION, at="proposed_at", key="disposition_id", limit=limit,
            equal={"status": None if status is None else status.value},
            after=None if after is None else (after.created_at, after.document_id),
        )
        with self._reading("list_dispositions") as db:
            return [_disposition(row, db.all(ITEMS, id=as_uuid(row["disposition_id"])))
                    for row in db.all(query, **params)]

    def eligible_for_disposition(
        self, now: datetime, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[EligibleDocument]:
        """Past ``retain_until`` at ``now`` and held by nothing, soonest expired first,
        after the ``(retain_until, document_id)`` of a previous page."""
        start = after or (datetime.fromtimestamp(0, now.tzinfo), NO_ID)
        with self._reading("eligible_for_disposition") as db:
            rows = db.all(ELIGIBLE, now=now, after_at=start[0], after_id=start[1], limit=limit)
        return [
            EligibleDocument(
                document_id=as_uuid(r["document_id"]), entity_id=as_uuid(r["entity_id"]),
                entity_type=str(r["entity_type"]), document_type=str(r["document_type"]),
                sha256_hash=str(r["sha256_hash"]), status=str(r["status"]),
                policy_version=int(r["policy_version"]), retention_mode=str(r["mode"]),
                retain_until=as_datetime(r["retain_until"]), on_expiry=str(r["on_expiry"]),
            )
            for r in rows
        ]


def _require_disposable(
    db: Session, disposition_id: uuid.UUID, docs: Sequence[Document], at: datetime
) -> dict[uuid.UUID, DocumentRetention | None]:
    """Each document's retention, once nothing keeps any of them (else ``NotDisposable``
    naming what keeps each)."""
    blocked: dict[uuid.UUID, list[str]] = {}
    kept_by: dict[uuid.UUID, DocumentRetention | None] = {}
    for doc in docs:
        row = db.one(RETENTION_OF, id=doc.id)
        retention = kept_by[doc.id] = None if row is None else retention_from_row(row)
        holds = active_holds(db, doc.id, doc.entity_id)
        pending = [as_uuid(r["disposition_id"])
                   for r in db.all(PENDING_FOR, document_id=doc.id, id=disposition_id)]
        reasons = blocked_at_execution(doc, retention, holds, pending, at)
        if reasons:
            blocked[doc.id] = reasons
    if blocked:
        raise NotDisposable(blocked)
    return kept_by


def _refuse_locked(doc: Document, versions: Sequence[StoredVersion], at: datetime) -> None:
    for version in versions:
        lock = version.lock
        if lock.blocks_deletion(at):
            held = "a legal hold" if lock.legal_hold else f"retention until {lock.retain_until}"
            raise StorageLocked(
                f"the storage keeps document {doc.id} (version {version.version_id}) under"
                f" {held}: nothing was disposed"
            )


def _merged(
    recorded: Sequence[DisposedVersion] | None, found: Sequence[StoredVersion]
) -> list[DisposedVersion]:
    """What the certificate names: every version recorded before, then any found since."""
    merged = list(recorded or ())
    merged.extend(v for v in map(DisposedVersion.of, found) if v not in merged)
    return merged


def _version_json(version: DisposedVersion) -> dict[str, Any]:
    return {"version_id": version.version_id, "delete_marker": version.delete_marker}


def _versions_json(versions: Sequence[DisposedVersion]) -> str:
    return json.dumps([_version_json(v) for v in versions])


def _role(actor: Actor) -> str:
    return actor.type if actor.role is None else actor.role.value


def _document(db: Session, document_id: uuid.UUID) -> Document:
    row = db.one(q.DOCUMENT_FOR_UPDATE, id=document_id)
    if row is None:
        raise DocumentNotFound(document_id)
    return document_from_row(row)


def _load(db: Session, disposition_id: uuid.UUID, *, for_update: bool = False) -> Disposition:
    row = db.one(DISPOSITION_FOR_UPDATE if for_update else DISPOSITION, id=disposition_id)
    if row is None:
        raise DispositionNotFound(f"Disposition {disposition_id} not found")
    return _disposition(row, db.all(ITEMS, id=disposition_id))


def _event(
    action: str, disposition_id: uuid.UUID, actor: Actor, details: dict[str, object],
    correlation_id: str | None, at: datetime,
) -> OutboxEvent:
    return audit_event(action, actor, disposition_id, dict(details), correlation_id, at,
                       entity_type="disposition")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _disposition(row: Row, items: list[Row]) -> Disposition:
    return Disposition(
        disposition_id=as_uuid(row["disposition_id"]), status=DispositionStatus(row["status"]),
        reason=str(row["reason"]), proposed_at=as_datetime(row["proposed_at"]),
        proposed_by=as_optional_uuid(row["proposed_by"]),
        proposed_role=str(row["proposed_role"]),
        approved_at=as_optional_datetime(row["approved_at"]),
        approved_by=as_optional_uuid(row["approved_by"]),
        approved_role=_text(row["approved_role"]),
        holds_checked_at=as_optional_datetime(row["holds_checked_at"]),
        executed_at=as_optional_datetime(row["executed_at"]),
        executed_by=as_optional_uuid(row["executed_by"]),
        executed_role=_text(row["executed_role"]),
        items=tuple(_item(i) for i in items),
    )


def _item(row: Row) -> DispositionItem:
    versions = row["storage_versions"]
    return DispositionItem(
        document_id=as_uuid(row["document_id"]), entity_id=as_uuid(row["entity_id"]),
        entity_type=str(row["entity_type"]), document_type=str(row["document_type"]),
        filename=str(row["filename"]), sha256_hash=str(row["sha256_hash"]),
        size_bytes=int(row["size_bytes"]), storage_bucket=str(row["storage_bucket"]),
        storage_key=str(row["storage_key"]),
        policy_version=None if row["policy_version"] is None else int(row["policy_version"]),
        retention_mode=_text(row["retention_mode"]),
        retain_until=as_optional_datetime(row["retain_until"]),
        storage_versions=None if versions is None else tuple(
            DisposedVersion(v["version_id"], bool(v["delete_marker"]))
            for v in json.loads(str(versions))
        ),
        leaf_hash=_text(row["leaf_hash"]),
        ledger_index=None if row["leaf_index"] is None else int(row["leaf_index"]),
    )
