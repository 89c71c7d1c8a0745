"""Entity freezes in the SQL store: one row an entity, its freeze as it stands.

``freeze_for_mismatch`` runs inside ``record_verification``'s transaction
(with ``ENTITY_FREEZE_ON_MISMATCH``): it freezes the entity unless it is
frozen already, and only then writes ``entity.frozen`` (the audit event
and the notification). ``set_freeze`` is the compliance officer's freeze or
unfreeze, with its events, in one transaction; asking for the state the
entity is in changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from vault.adapters.stores.incidents import SqlIncidents
from vault.adapters.stores.outbox import insert_events
from vault.adapters.stores.rows import as_optional_datetime, as_uuid
from vault.adapters.stores.sql import Q, Row, Session
from vault.domain.freezes import MISMATCH_REASON, FreezeState, freeze_event
from vault.domain.models import Actor
from vault.domain.notifications import freeze_changed

_STATE = (
    "SELECT entity_id, frozen, since, reason, incident_id, frozen_by FROM entity_freezes"
    " WHERE entity_id = $entity_id"
)
STATE = Q(_STATE)
STATE_FOR_UPDATE = Q(_STATE + "{for_update}")
# Both changes say what they expect to find, so two at once change the row once:
# a freeze only of an entity not frozen (or never seen), an unfreeze only of a
# frozen one.
FREEZE_BY_HAND = Q(
    "INSERT INTO entity_freezes (entity_id, frozen, since, reason, incident_id, frozen_by,"
    " updated_at) VALUES ($entity_id, $frozen, $at, $reason, NULL, $by, $at)"
    " ON CONFLICT (entity_id) DO UPDATE SET frozen = excluded.frozen, since = excluded.since,"
    " reason = excluded.reason, incident_id = NULL, frozen_by = excluded.frozen_by,"
    " updated_at = excluded.updated_at WHERE entity_freezes.frozen = $not_frozen"
)
UNFREEZE = Q(
    "UPDATE entity_freezes SET frozen = $not_frozen, since = NULL, reason = NULL,"
    " incident_id = NULL, frozen_by = NULL, updated_at = $at"
    " WHERE entity_id = $entity_id AND frozen = $frozen"
)
FREEZE_IF_NOT = Q(
    "INSERT INTO entity_freezes (entity_id, frozen, since, reason, incident_id, frozen_by,"
    " updated_at) VALUES ($entity_id, $frozen, $at, $reason, $incident_id, NULL, $at)"
    " ON CONFLICT (entity_id) DO UPDATE SET frozen = excluded.frozen, since = excluded.since,"
    " reason = excluded.reason, incident_id = excluded.incident_id, frozen_by = NULL,"
    " updated_at = excluded.updated_at WHERE entity_freezes.frozen = $not_frozen"
)


def freeze_for_mismatch(
    db: Session, entity_id: uuid.UUID, incident_id: uuid.UUID, at: datetime
) -> bool:
    """Freeze the entity for a mismatch unless it is frozen; True when this froze it."""
    froze = db.execute(
        FREEZE_IF_NOT, entity_id=entity_id, frozen=True, not_frozen=False, at=at,
        reason=MISMATCH_REASON, incident_id=incident_id,
    ) == 1
    if froze:
        insert_events(db, [
            freeze_event(
                "entity.frozen", entity_id, Actor.system(), MISMATCH_REASON, incident_id, None, at
            ),
            freeze_changed(entity_id, frozen=True, actor=Actor.system(), reason=MISMATCH_REASON,
                           incident_id=incident_id, at=at),
        ])
    return froze


class SqlFreezes(SqlIncidents):
    """Entity freezes of every SQL ``MetadataStore``."""

    def entity_freeze(self, entity_id: uuid.UUID) -> FreezeState:
        with self._reading("entity_freeze") as db:
            row = db.one(STATE, entity_id=entity_id)
        return FreezeState(entity_id, False) if row is None else _state(row)

    def set_freeze(
        self, entity_id: uuid.UUID, *, frozen: bool, actor: Actor, reason: str,
        correlation_id: str | None, at: datetime,
    ) -> tuple[FreezeState, bool]:
        with self._transaction("set_freeze") as db:
            row = db.one(STATE_FOR_UPDATE, entity_id=entity_id)
            before = FreezeState(entity_id, False) if row is None else _state(row)
            if frozen:
                changed = db.execute(
                    FREEZE_BY_HAND, entity_id=entity_id, frozen=True, not_frozen=False,
                    reason=reason, by=actor.id, at=at,
                ) == 1
            else:
                changed = db.execute(
                    UNFREEZE, entity_id=entity_id, frozen=True, not_frozen=False, at=at
                ) == 1
            after = db.one(STATE, entity_id=entity_id)
            state = FreezeState(entity_id, False) if after is None else _state(after)
            if changed:
                action = "entity.frozen" if frozen else "entity.unfrozen"
                incident = None if frozen else before.incident_id
                insert_events(db, [
                    freeze_event(action, entity_id, actor, reason, incident, correlation_id, at),
                    freeze_changed(entity_id, frozen=frozen, actor=actor, reason=reason,
                                   incident_id=incident, at=at),
                ])
        return state, changed


def _state(row: Row) -> FreezeState:
    incident, by = row["incident_id"], row["frozen_by"]
    return FreezeState(
        entity_id=as_uuid(row["entity_id"]), frozen=bool(row["frozen"]),
        since=as_optional_datetime(row["since"]),
        reason=None if row["reason"] is None else str(row["reason"]),
        incident_id=None if incident is None else as_uuid(incident),
        by=None if by is None else as_uuid(by),
    )
