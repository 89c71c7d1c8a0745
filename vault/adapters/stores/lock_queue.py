"""Queueing documents whose object's lock must follow the records (``storage_lock_queue``).

Called inside the transactions that change what a lock must be; the
retention keeper works the queue off (``storage_locks.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from vault.adapters.stores.rows import as_uuid
from vault.adapters.stores.sql import Q, Session

ENQUEUE = Q(
    "INSERT INTO storage_lock_queue (document_id, queued_at, token) VALUES ($id, $at, $token)"
    " ON CONFLICT (document_id) DO UPDATE SET queued_at = excluded.queued_at,"
    " token = excluded.token"
)
ENQUEUE_ENTITY = Q(
    "INSERT INTO storage_lock_queue (document_id, queued_at, token)"
    " SELECT id, $at, $token FROM documents WHERE entity_id = $entity_id"
    " ON CONFLICT (document_id) DO UPDATE SET queued_at = excluded.queued_at,"
    " token = excluded.token"
)
HOLD_TARGETS = Q(
    "SELECT kind, target_id FROM legal_hold_items WHERE hold_id = $id AND removed_at IS NULL"
)

def enqueue_documents(db: Session, document_ids: Sequence[uuid.UUID], at: datetime) -> None:
    for document_id in document_ids:
        db.execute(ENQUEUE, id=document_id, at=at, token=uuid.uuid4())


def enqueue_entities(db: Session, entity_ids: Sequence[uuid.UUID], at: datetime) -> None:
    for entity_id in entity_ids:
        db.execute(ENQUEUE_ENTITY, entity_id=entity_id, at=at, token=uuid.uuid4())


def enqueue_hold(db: Session, hold_id: uuid.UUID, at: datetime) -> None:
    """Every document the hold covers now (before a release, or after a change)."""
    rows = db.all(HOLD_TARGETS, id=hold_id)
    enqueue_documents(db, [as_uuid(r["target_id"]) for r in rows if r["kind"] == "document"], at)
    enqueue_entities(db, [as_uuid(r["target_id"]) for r in rows if r["kind"] == "entity"], at)
