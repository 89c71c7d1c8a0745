"""Integrity incidents: mismatches grouped by entity, until a compliance officer resolves them.

A mismatch opens its entity's incident, or joins the one open (at most one
is open an entity); the incident keeps each document's latest detection.
Every integrity alert of a mismatch carries its ``incident_id``, so a
dashboard can group them. Resolving needs a resolution text and closes the
incident for good; the entity's next mismatch opens a new one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import attrs

from vault.domain.errors import VaultError
from vault.domain.events import Destination, OutboxEvent
from vault.domain.models import EntityType
from vault.domain.validation import required_text

MAX_RESOLUTION_CHARS = 2000


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentNotFound(VaultError, LookupError):
    status = 404
    error_code = "INCIDENT_NOT_FOUND"
    title = "Incident Not Found"


class IncidentResolved(VaultError):
    status = 409
    error_code = "INCIDENT_ALREADY_RESOLVED"
    title = "Incident Already Resolved"


@attrs.frozen
class IncidentDocument:
    document_id: UUID
    filename: str
    expected_hash: str
    calculated_hash: str | None
    detected_at: datetime


@attrs.frozen
class Incident:
    incident_id: UUID
    entity_id: UUID
    entity_type: EntityType
    status: IncidentStatus
    opened_at: datetime
    last_detected_at: datetime
    documents: tuple[IncidentDocument, ...] = ()
    resolved_at: datetime | None = None
    resolved_by: UUID | None = None
    resolution: str | None = None


def check_resolution(raw: object) -> str:
    """The resolution text of a resolve request, or a 422 naming ``resolution``."""
    return required_text(raw, "resolution", MAX_RESOLUTION_CHARS)


def with_incident(events: Sequence[OutboxEvent], incident_id: UUID) -> list[OutboxEvent]:
    """``events`` with every integrity alert's body carrying ``incident_id``."""
    out = []
    for event in events:
        if event.destination is Destination.INTEGRITY_ALERTS:
            event = attrs.evolve(event, body={**event.body, "incident_id": str(incident_id)})
        out.append(event)
    return out
