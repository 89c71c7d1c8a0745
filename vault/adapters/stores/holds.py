"""Legal holds in the SQL store: created, items added and removed, released; never deleted.

Each change is one transaction with its audit event. The hold's row is
read ``FOR UPDATE`` first (SQLite: its write lock), so a release and an
item change never interleave: items are never added to a released hold.
Adding an item the hold already covers, or removing one it does not,
changes nothing (the partial unique index keeps one active item a target).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from vault.adapters.stores.lock_queue import enqueue_documents, enqueue_entities, enqueue_hold
from vault.adapters.stores.outbox import MAX_IDS_PER_STATEMENT, insert_events
from vault.adapters.stores.retention import SqlRetention
from vault.adapters.stores.rows import as_datetime, as_optional_datetime, as_optional_uuid, as_uuid
from vault.adapters.stores.sql import Q, Row, Session, chunks, newest_first
from vault.domain.errors import DocumentNotFound
from vault.domain.events import OutboxEvent, audit_event
from vault.domain.holds import (
    HoldItem,
    HoldNotFound,
    HoldReleased,
    HoldStatus,
    ItemChange,
    ItemKind,
    LegalHold,
    NewHold,
)
from vault.domain.models import Actor
from vault.ports.pages import PageCursor

_HOLD = (
    "SELECT hold_id, name, matter, reason, custodian, status, created_at, created_by,"
    " released_at, released_by, release_reason FROM legal_holds"
)
HOLD = Q(f"{_HOLD} WHERE hold_id = $id")
HOLD_FOR_UPDATE = Q(f"{_HOLD} WHERE hold_id = $id" "{for_update}")
HOLD_INSERT = Q(
    "INSERT INTO legal_holds (hold_id, name, matter, reason, custodian, status, created_at,"
    " created_by) VALUES ($id, $name, $matter, $reason, $custodian, 'active', $at, $by)"
)
ITEMS = Q(
    "SELECT kind, target_id, added_at, added_by, added_reason, removed_at, removed_by,"
    " removed_reason FROM legal_hold_items WHERE hold_id = $id"
    " ORDER BY added_at, kind, target_id"
)
ITEM_ADD = Q(
    "INSERT INTO legal_hold_items (item_id, hold_id, kind, target_id, added_at, added_by,"
    " added_reason) VALUES ($item, $id, $kind, $target, $at, $by, $reason)"
    " ON CONFLICT (hold_id, kind, target_id) WHERE removed_at IS NULL DO NOTHING"
)
ITEM_REMOVE = Q(
    "UPDATE legal_hold_items SET removed_at = $at, removed_by = $by, removed_reason = $reason"
    " WHERE hold_id = $id AND kind = $kind AND target_id = $target AND removed_at IS NULL"
)
RELEASE = Q(
    "UPDATE legal_holds SET status = 'released', released_at = $at, released_by = $by,"
    " release_reason = $reason WHERE hold_id = $id AND status = 'active'"
)
PRESENT = Q("SELECT id FROM documents WHERE id IN ($*ids)")
# The active holds covering a document, by its id or its entity's.
HOLDS_OF = Q(
    "SELECT DISTINCT h.hold_id AS hold_id, h.created_at AS created_at"
    " FROM legal_hold_items i JOIN legal_holds h ON h.hold_id = i.hold_id"
    " WHERE h.status = 'active' AND i.removed_at IS NULL"
    " AND ((i.kind = 'document' AND i.target_id = $document_id)"
    "      OR (i.kind = 'entity' AND i.target_id = $entity_id))"
    " ORDER BY h.created_at, h.hold_id"
)


class SqlHolds(SqlRetention):
    """Legal holds of every SQL ``MetadataStore``."""

    def _lock_records(self, db: Session) -> None:
        """Serialise what decides whether a document may be destroyed: placing a hold or
        adding to one, proposing and executing a disposition (a dialect's hook; SQLite:
        nothing, its write lock already does)."""

    def create_hold(
        self, new: NewHold, *, actor: Actor, correlation_id: str | None, at: datetime
    ) -> LegalHold:
        hold_id = uuid.uuid4()
        with self._transaction("create_hold") as db:
            self._lock_records(db)
            _require_documents(db, new.document_ids)
            db.execute(HOLD_INSERT, id=hold_id, name=new.name, matter=new.matter,
                       reason=new.reason, custodian=new.custodian, at=at, by=actor.id)
            _add(db, hold_id, new.document_ids, new.entity_ids, new.reason, actor, at)
            enqueue_hold(db, hold_id, at)
            insert_events(db, [_event("legal_hold.created", hold_id, actor, {
                "name": new.name, "matter": new.matter, "reason": new.reason,
                "custodian": new.custodian, "document_ids": [str(d) for d in new.document_ids],
                "entity_ids": [str(e) for e in new.entity_ids],
            }, correlation_id, at)])
            return _load(db, hold_id)

    def change_hold_items(
        self, hold_id: uuid.UUID, change: ItemChange, *, add: bool, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> LegalHold:
        with self._transaction("change_hold_items") as db:
            if add:
                self._lock_records(db)
            hold = _locked_active(db, hold_id)
            if add:
                _require_documents(db, change.document_ids)
                _add(db, hold.hold_id, change.document_ids, change.entity_ids, change.reason,
                     actor, at)
            else:
                for kind, ids in ((ItemKind.DOCUMENT, change.document_ids),
                                  (ItemKind.ENTITY, change.entity_ids)):
                    for target in ids:
                        db.execute(ITEM_REMOVE, id=hold_id, kind=kind.value, target=target,
                                   at=at, by=actor.id, reason=change.reason)
            enqueue_documents(db, change.document_ids, at)
            enqueue_entities(db, change.entity_ids, at)
            action = "legal_hold.items_added" if add else "legal_hold.items_removed"
            insert_events(db, [_event(action, hold_id, actor, {
                "reason": change.reason,
                "document_ids": [str(d) for d in change.document_ids],
                "entity_ids": [str(e) for e in change.entity_ids],
            }, correlation_id, at)])
            return _load(db, hold_id)

    def release_hold(
        self, hold_id: uuid.UUID, *, reason: str, actor: Actor, correlation_id: str | None,
        at: datetime,
    ) -> LegalHold:
        with self._transaction("release_hold") as db:
            _locked_active(db, hold_id)
            enqueue_hold(db, hold_id, at)  # what it covered, before it covers nothing
            db.execute(RELEASE, id=hold_id, at=at, by=actor.id, reason=reason)
            insert_events(db, [_event("legal_hold.released", hold_id, actor,
                                      {"reason": reason}, correlation_id, at)])
            return _load(db, hold_id)

    def get_hold(self, hold_id: uuid.UUID) -> LegalHold:
        with self._reading("get_hold") as db:
            return _load(db, hold_id)

    def list_holds(
        self, *, status: HoldStatus | None, limit: int, after: PageCursor | None
    ) -> list[LegalHold]:
        query, params = newest_first(
            _HOLD, at="created_at", key="hold_id", limit=limit,
            equal={"status": None if status is None else status.value},
            after=None if after is None else (after.created_at, after.document_id),
        )
        with self._reading("list_holds") as db:
            return [_hold(row, db.all(ITEMS, id=as_uuid(row["hold_id"])))
                    for row in db.all(query, **params)]

    def holds_of(self, document_id: uuid.UUID, entity_id: uuid.UUID) -> list[uuid.UUID]:
        """The active holds covering the document (by its id or its entity's), oldest first."""
        with self._reading("holds_of") as db:
            return active_holds(db, document_id, entity_id)


def active_holds(db: Session, document_id: uuid.UUID, entity_id: uuid.UUID) -> list[uuid.UUID]:
    """The active holds covering the document, inside the caller's transaction."""
    return [as_uuid(row["hold_id"])
            for row in db.all(HOLDS_OF, document_id=document_id, entity_id=entity_id)]


def _require_documents(db: Session, document_ids: Sequence[uuid.UUID]) -> None:
    present: set[uuid.UUID] = set()
    for chunk in chunks(list(document_ids), MAX_IDS_PER_STATEMENT):
        present.update(as_uuid(row["id"]) for row in db.all(PRESENT, ids=list(chunk)))
    missing = [d for d in document_ids if d not in present]
    if missing:
        raise DocumentNotFound(missing[0])


def _add(
    db: Session, hold_id: uuid.UUID, document_ids: Sequence[uuid.UUID],
    entity_ids: Sequence[uuid.UUID], reason: str, actor: Actor, at: datetime,
) -> None:
    for kind, ids in ((ItemKind.DOCUMENT, document_ids), (ItemKind.ENTITY, entity_ids)):
        for target in ids:
            db.execute(ITEM_ADD, item=uuid.uuid4(), id=hold_id, kind=kind.value, target=target,
                       at=at, by=actor.id, reason=reason)


def _locked_active(db: Session, hold_id: uuid.UUID) -> LegalHold:
    row = db.one(HOLD_FOR_UPDATE, id=hold_id)
    if row is None:
        raise HoldNotFound(f"Legal hold {hold_id} not found")
    hold = _hold(row, [])
    if hold.status is HoldStatus.RELEASED:
        raise HoldReleased(f"Legal hold {hold_id} was released; it changes no more")
    return hold


def _load(db: Session, hold_id: uuid.UUID) -> LegalHold:
    row = db.one(HOLD, id=hold_id)
    if row is None:
        raise HoldNotFound(f"Legal hold {hold_id} not found")
    return _hold(row, db.all(ITEMS, id=hold_id))


def _event(
    action: str, hold_id: uuid.UUID, actor: Actor, details: dict[str, object],
    correlation_id: str | None, at: datetime,
) -> OutboxEvent:
    return audit_event(action, actor, hold_id, dict(details), correlation_id, at,
                       entity_type="legal_hold")


def _hold(row: Row, items: list[Row]) -> LegalHold:
    return LegalHold(
        hold_id=as_uuid(row["hold_id"]), name=str(row["name"]), matter=str(row["matter"]),
        reason=str(row["reason"]), custodian=str(row["custodian"]),
        status=HoldStatus(row["status"]), created_at=as_datetime(row["created_at"]),
        created_by=as_optional_uuid(row["created_by"]),
        items=tuple(
            HoldItem(
                kind=ItemKind(i["kind"]), target_id=as_uuid(i["target_id"]),
                added_at=as_datetime(i["added_at"]), added_by=as_optional_uuid(i["added_by"]),
                added_reason=None if i["added_reason"] is None else str(i["added_reason"]),
                removed_at=as_optional_datetime(i["removed_at"]),
                removed_by=as_optional_uuid(i["removed_by"]),
                removed_reason=None if i["removed_reason"] is None else str(i["removed_reason"]),
            )
            for i in items
        ),
        released_at=as_optional_datetime(row["released_at"]),
        released_by=as_optional_uuid(row["released_by"]),
        release_reason=None if row["release_reason"] is None else str(row["release_reason"]),
    )
