"""Entity freeze: what a mismatch (or a compliance officer) does to an entity's documents.

While an entity is frozen, uploading for it, issuing download URLs for its
documents, fetching them through an embedded signed URL and archiving them
answer 423 ``ENTITY_FROZEN``; listing and verification keep working, since
investigators need them. With ``ENTITY_FREEZE_ON_MISMATCH`` a mismatch
freezes its entity in the transaction that records it. Freezing and
unfreezing are audit events (``entity.frozen``, ``entity.unfrozen``,
``entity_type: "entity"``). A freeze cannot reach an S3 URL issued before
it: that stays valid until it expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from vault.domain.errors import VaultError
from vault.domain.events import OutboxEvent, audit_event
from vault.domain.models import Actor
from vault.domain.validation import required_text

MISMATCH_REASON = "integrity mismatch"
MAX_REASON_CHARS = 1000


@attrs.frozen
class FreezeState:
    entity_id: UUID
    frozen: bool
    since: datetime | None = None
    reason: str | None = None
    incident_id: UUID | None = None
    by: UUID | None = None


class EntityFrozen(VaultError, PermissionError):
    status = 423
    error_code = "ENTITY_FROZEN"
    title = "Entity Frozen"

    def __init__(self, state: FreezeState) -> None:
        self.state = state
        super().__init__(
            f"Entity {state.entity_id} is frozen ({state.reason or 'no reason given'})"
        )

    def extra(self) -> dict[str, Any]:
        incident = self.state.incident_id
        return {
            "entity_id": str(self.state.entity_id),
            "incident_id": None if incident is None else str(incident),
        }


def check_reason(raw: object) -> str:
    """The reason of a freeze or unfreeze request, or a 422 naming ``reason``."""
    return required_text(raw, "reason", MAX_REASON_CHARS)


def freeze_event(
    action: str, entity_id: UUID, actor: Actor, reason: str | None, incident_id: UUID | None,
    correlation_id: str | None, at: datetime,
) -> OutboxEvent:
    """``entity.frozen`` or ``entity.unfrozen``, for the audit topic."""
    details = {
        "reason": reason,
        "incident_id": None if incident_id is None else str(incident_id),
    }
    return audit_event(
        action, actor, entity_id, details, correlation_id, at, entity_type="entity"
    )
