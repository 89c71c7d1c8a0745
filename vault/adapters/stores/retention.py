"""Retention in the SQL store: policy versions, and each document's retention.

``put_retention_policy`` writes a new version under a lock on the
document type's versions (PostgreSQL ``FOR UPDATE`` on the newest row and
a transaction-scoped advisory lock for the first; SQLite's write lock), so
two writers never make one version twice, and in the same transaction
moves later the ``retain_until`` of every document of that type the new
version keeps longer, with its audit event. ``record_retention`` runs
inside ``record_upload``: a document uploaded after a policy records its
version and ``retain_until``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from vault.adapters.stores.freezes import SqlFreezes
from vault.adapters.stores.lock_queue import enqueue_documents
from vault.adapters.stores.outbox import insert_events
from vault.adapters.stores.rows import as_datetime, as_optional_uuid
from vault.adapters.stores.sql import Q, Row, Session
from vault.domain.events import audit_event
from vault.domain.models import Actor, Document, DocumentType
from vault.domain.retention import (
    DocumentRetention,
    OnExpiry,
    Period,
    PolicyRequest,
    RetentionMode,
    RetentionPolicy,
    check_successor,
    lengthened,
    retain_until,
)

_POLICY = (
    "SELECT document_type, version, period, mode, on_expiry, created_at, created_by"
    " FROM retention_policies"
)
NEWEST = Q(f"{_POLICY} WHERE document_type = $type ORDER BY version DESC LIMIT 1")
NEWEST_FOR_UPDATE = Q(f"{_POLICY} WHERE document_type = $type ORDER BY version DESC LIMIT 1"
                      "{for_update}")
ALL_POLICIES = Q(f"{_POLICY} ORDER BY document_type, version")
POLICY_INSERT = Q(
    "INSERT INTO retention_policies (document_type, version, period, mode, on_expiry,"
    " created_at, created_by) VALUES ($type, $version, $period, $mode, $on_expiry, $at, $by)"
)
RETENTION_INSERT = Q(
    "INSERT INTO document_retention (document_id, document_type, policy_version, mode,"
    " retain_until, updated_at) VALUES ($id, $type, $version, $mode, $until, $at)"
)
_RETENTION = (
    "SELECT r.document_id, r.document_type, r.policy_version, r.mode, r.retain_until,"
    " d.created_at AS uploaded_at"
    " FROM document_retention r JOIN documents d ON d.id = r.document_id"
)
RETENTION_OF = Q(f"{_RETENTION} WHERE r.document_id = $id")
RETENTION_OF_TYPE = Q(
    f"{_RETENTION} WHERE r.document_type = $type AND r.document_id > $after"
    " ORDER BY r.document_id LIMIT $limit"
)
RETENTION_LENGTHEN = Q(
    "UPDATE document_retention SET policy_version = $version, mode = $mode,"
    " retain_until = $until, updated_at = $at WHERE document_id = $id"
)
LENGTHEN_PAGE = 500
NO_ID = uuid.UUID(int=0)


ENTITY_HELD = Q(
    "SELECT 1 AS held FROM legal_hold_items i JOIN legal_holds h ON h.hold_id = i.hold_id"
    " WHERE h.status = 'active' AND i.removed_at IS NULL AND i.kind = 'entity'"
    " AND i.target_id = $entity_id LIMIT 1"
)


def record_retention(db: Session, doc: Document) -> DocumentRetention | None:
    """Give a new document the newest policy of its type, if its type has one; queue its
    object's lock when it has a retention or its entity is held."""
    row = db.one(NEWEST, type=doc.document_type.value)
    if row is None:
        if db.one(ENTITY_HELD, entity_id=doc.entity_id) is not None:
            enqueue_documents(db, [doc.id], doc.created_at)
        return None
    policy = _policy(row)
    until = retain_until(doc.created_at, policy)
    db.execute(RETENTION_INSERT, id=doc.id, type=policy.document_type.value,
               version=policy.version, mode=policy.mode.value, until=until, at=doc.created_at)
    enqueue_documents(db, [doc.id], doc.created_at)
    return DocumentRetention(
        document_id=doc.id, document_type=policy.document_type, policy_version=policy.version,
        mode=policy.mode, retain_until=until, uploaded_at=doc.created_at,
    )


class SqlRetention(SqlFreezes):
    """Retention policies and documents' retention of every SQL ``MetadataStore``."""

    def _lock_policy_type(self, db: Session, document_type: DocumentType) -> None:
        """Serialize writers of one type's versions (a dialect's hook; SQLite: nothing,
        its write lock already does)."""

    def put_retention_policy(
        self, document_type: DocumentType, request: PolicyRequest, *, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> tuple[RetentionPolicy, int]:
        """The new version and how many existing documents now keep longer."""
        with self._transaction("put_retention_policy") as db:
            self._lock_policy_type(db, document_type)
            row = db.one(NEWEST_FOR_UPDATE, type=document_type.value)
            current = None if row is None else _policy(row)
            check_successor(current, request)
            policy = RetentionPolicy(
                document_type=document_type, version=1 if current is None else current.version + 1,
                period=request.period, mode=request.mode, on_expiry=request.on_expiry,
                created_at=at, created_by=actor.id,
            )
            db.execute(POLICY_INSERT, type=document_type.value, version=policy.version,
                       period=policy.period.text(), mode=policy.mode.value,
                       on_expiry=policy.on_expiry.value, at=at, by=actor.id)
            moved = 0 if current is None else _lengthen_existing(db, policy, at)
            insert_events(db, [audit_event(
                "retention.policy_set", actor, document_type.value,
                {
                    "document_type": document_type.value, "version": policy.version,
                    "period": policy.period.text(), "mode": policy.mode.value,
                    "on_expiry": policy.on_expiry.value, "documents_lengthened": moved,
                },
                correlation_id, at, entity_type="retention_policy",
            )])
        return policy, moved

    def retention_policies(self) -> list[RetentionPolicy]:
        with self._reading("retention_policies") as db:
            return [_policy(row) for row in db.all(ALL_POLICIES)]

    def document_retention(self, document_id: uuid.UUID) -> DocumentRetention | None:
        with self._reading("document_retention") as db:
            row = db.one(RETENTION_OF, id=document_id)
        return None if row is None else retention_from_row(row)


def _lengthen_existing(db: Session, policy: RetentionPolicy, at: datetime) -> int:
    """Move later every document of the policy's type that it keeps longer; how many."""
    moved = 0
    after = NO_ID
    while rows := db.all(RETENTION_OF_TYPE, type=policy.document_type.value, after=after,
                         limit=LENGTHEN_PAGE):
        for row in rows:
            held = retention_from_row(row)
            until = lengthened(held.retain_until, held.uploaded_at, policy)
            mode = RetentionMode.COMPLIANCE if RetentionMode.COMPLIANCE in (
                held.mode, policy.mode) else RetentionMode.GOVERNANCE
            if until > held.retain_until or mode is not held.mode:
                db.execute(RETENTION_LENGTHEN, id=held.document_id, version=policy.version,
                           mode=mode.value, until=until, at=at)
                enqueue_documents(db, [held.document_id], at)
                moved += 1
        after = retention_from_row(rows[-1]).document_id
    return moved


def _policy(row: Row) -> RetentionPolicy:
    return RetentionPolicy(
        document_type=DocumentType(row["document_type"]), version=int(row["version"]),
        period=Period.parse(str(row["period"])), mode=RetentionMode(row["mode"]),
        on_expiry=OnExpiry(row["on_expiry"]), created_at=as_datetime(row["created_at"]),
        created_by=as_optional_uuid(row["created_by"]),
    )


def retention_from_row(row: Row) -> DocumentRetention:
    """A ``RETENTION_OF`` row as the domain's ``DocumentRetention``."""
    return DocumentRetention(
        document_id=uuid.UUID(str(row["document_id"])),
        document_type=DocumentType(row["document_type"]),
        policy_version=int(row["policy_version"]), mode=RetentionMode(row["mode"]),
        retain_until=as_datetime(row["retain_until"]),
        uploaded_at=as_datetime(row["uploaded_at"]),
    )
