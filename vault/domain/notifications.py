"""Incident notifications: what a person on call reads when an incident or a freeze changes.

One notification goes out, through the outbox like every other event, when
an incident opens, grows (a document not yet in it mismatches) or is
resolved, and when an entity is frozen or unfrozen. A document that
mismatches again while its incident is open changes the incident's
``detected_at`` only: it sends nothing, so a sweep finding the same tampered
file every period does not page anyone again.

The body is what a Slack incoming webhook takes (``text``) with the
structured fields beside it, so one URL serves a chat channel and a
machine alike. ``text`` escapes ``&``, ``<`` and ``>`` as Slack asks, so a
filename or a resolution cannot mention a channel or forge a link; the
structured fields carry the values as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import attrs

from vault.domain.events import AUDIT_SOURCE, Destination, OutboxEvent
from vault.domain.models import Actor, Document, EntityType, iso_event

INCIDENT_OPENED = "incident.opened"
INCIDENT_GROWN = "incident.grown"
INCIDENT_RESOLVED = "incident.resolved"
ENTITY_FROZEN = "entity.frozen"
ENTITY_UNFROZEN = "entity.unfrozen"


@attrs.frozen
class Detection:
    """One document's mismatch, as its incident records it."""

    document: Document
    calculated_hash: str | None
    at: datetime

    def fields(self) -> dict[str, Any]:
        return {
            "document_id": str(self.document.id),
            "filename": self.document.filename,
            "expected_hash": self.document.sha256_hash,
            "calculated_hash": self.calculated_hash,
            "detected_at": iso_event(self.at),
        }


def slack_escape(text: str) -> str:
    """``text`` as Slack's ``text`` field takes it literally (its three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(actor: Actor | UUID | None) -> str:
    if isinstance(actor, Actor):
        actor = actor.id
    return "the vault" if actor is None else str(actor)


def _mismatch_line(detection: Detection) -> str:
    doc = detection.document
    return (
        f"{slack_escape(doc.filename)} (document {doc.id}) does not match its recorded SHA-256"
    )


def incident_detected(
    incident_id: UUID, detection: Detection, *, opened: bool, documents: int
) -> OutboxEvent:
    """``incident.opened`` (its first document) or ``incident.grown`` (one more)."""
    doc = detection.document
    subject = f"{doc.entity_type.value} {doc.entity_id}"
    if opened:
        kind = INCIDENT_OPENED
        text = (
            f"Integrity incident {incident_id} opened for {subject}:"
            f" {_mismatch_line(detection)}."
        )
    else:
        kind = INCIDENT_GROWN
        text = (
            f"Integrity incident {incident_id} for {subject} now holds {documents} documents:"
            f" {_mismatch_line(detection)}."
        )
    return _notification(kind, text, doc.entity_id, detection.at, {
        "incident_id": str(incident_id),
        "entity_type": doc.entity_type.value,
        "status": "open",
        "documents": documents,
        "document": detection.fields(),
    })


def incident_resolved(
    incident_id: UUID, entity_id: UUID, entity_type: EntityType, *, documents: int,
    resolved_by: UUID | None, resolution: str, at: datetime,
) -> OutboxEvent:
    text = (
        f"Integrity incident {incident_id} for {entity_type.value} {entity_id}"
        f" ({documents} document{'s' if documents != 1 else ''}) resolved by"
        f" {_who(resolved_by)}: {slack_escape(resolution)}"
    )
    return _notification(INCIDENT_RESOLVED, text, entity_id, at, {
        "incident_id": str(incident_id),
        "entity_type": entity_type.value,
        "status": "resolved",
        "documents": documents,
        "resolved_by": None if resolved_by is None else str(resolved_by),
        "resolution": resolution,
    })


def freeze_changed(
    entity_id: UUID, *, frozen: bool, actor: Actor, reason: str | None,
    incident_id: UUID | None, at: datetime,
) -> OutboxEvent:
    """``entity.frozen`` or ``entity.unfrozen``: what changed, why, and by whom."""
    kind = ENTITY_FROZEN if frozen else ENTITY_UNFROZEN
    verb = "frozen" if frozen else "unfrozen"
    why = slack_escape(reason or "no reason given")
    text = f"Entity {entity_id} {verb} by {_who(actor)}: {why}"
    if incident_id is not None:
        text += f" (incident {incident_id})"
    if frozen:
        text += ". Uploads, downloads and archiving answer 423 until it is unfrozen."
    else:
        text += "."
    return _notification(kind, text, entity_id, at, {
        "frozen": frozen,
        "reason": reason,
        "incident_id": None if incident_id is None else str(incident_id),
        "by": None if actor.id is None else str(actor.id),
    })


def _notification(
    kind: str, text: str, entity_id: UUID, at: datetime, fields: dict[str, Any]
) -> OutboxEvent:
    event_id = uuid4()
    return OutboxEvent(
        event_id=event_id,
        destination=Destination.INCIDENT_NOTIFICATIONS,
        body={
            "text": text,
            "event_id": str(event_id),
            "event_type": kind,
            "source": AUDIT_SOURCE,
            "occurred_at": iso_event(at),
            "entity_id": str(entity_id),
            **fields,
        },
        attributes={"event_type": kind},
        # One entity's notifications arrive in the order they happened.
        group_id=str(entity_id),
        created_at=at,
    )
