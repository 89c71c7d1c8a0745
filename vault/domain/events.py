"""The events a state change causes, shaped exactly as the contract's Events section.

Builders here are pure: they turn a document and what happened to it into
``OutboxEvent`` values. The metadata store writes them in the same
transaction as the change; the publisher actors deliver them afterwards.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import attrs

from vault.domain.models import Actor, Document, iso_event

AUDIT_SOURCE = "document-vault-service"


class Destination(enum.StrEnum):
    """Where an outbox row goes; each has one sink and one owning actor."""

    DOCUMENT_EVENTS = "document_events"
    AUDIT_EVENTS = "audit_events"
    INTEGRITY_ALERTS = "integrity_alerts"
    INCIDENT_NOTIFICATIONS = "incident_notifications"
    """Incidents opened, grown, resolved and entity freezes, for INCIDENT_WEBHOOK_URL."""


@attrs.frozen
class OutboxEvent:
    """A message waiting to be delivered at least once."""

    event_id: UUID
    destination: Destination
    body: dict[str, Any]
    attributes: dict[str, str]
    group_id: str | None
    created_at: datetime


@attrs.frozen
class OutboxRow:
    """An outbox event as stored, with its row id and delivery history."""

    id: int
    event: OutboxEvent
    attempts: int


def document_event(kind: str, doc: Document, at: datetime) -> OutboxEvent:
    """``document.uploaded|verified|archived|disposed`` for SQS consumers."""
    payload: dict[str, Any] = {
        "document_id": str(doc.id),
        "entity_type": doc.entity_type.value,
        "entity_id": str(doc.entity_id),
        "sha256_hash": doc.sha256_hash,
    }
    if kind == "document.uploaded":
        payload["status"] = "uploaded"
    return _document_event(kind, doc.id, payload, at)


def mismatch_event(doc: Document, calculated_hash: str | None, at: datetime) -> OutboxEvent:
    payload = {
        "document_id": str(doc.id),
        "entity_id": str(doc.entity_id),
        "expected_hash": doc.sha256_hash,
        "calculated_hash": calculated_hash,
    }
    return _document_event("document.mismatch", doc.id, payload, at)


def _document_event(
    kind: str, document_id: UUID, payload: dict[str, Any], at: datetime
) -> OutboxEvent:
    event_id = uuid4()
    return OutboxEvent(
        event_id=event_id,
        destination=Destination.DOCUMENT_EVENTS,
        body={
            "event_id": str(event_id),
            "event_type": kind,
            "occurred_at": iso_event(at),
            "payload": payload,
        },
        attributes={"event_type": kind},
        group_id=str(document_id),
        created_at=at,
    )


def audit_event(
    action: str,
    actor: Actor,
    document_id: UUID | str,
    details: dict[str, Any],
    correlation_id: str | None,
    at: datetime,
    *,
    entity_type: str = "document",
) -> OutboxEvent:
    """An audit record for the EPR service's SNS topic, about a document (or what
    ``entity_type`` names: an entity, a legal hold, a document type's retention policy)."""
    event_id = uuid4()
    return OutboxEvent(
        event_id=event_id,
        destination=Destination.AUDIT_EVENTS,
        body={
            "event_id": str(event_id),
            "source": AUDIT_SOURCE,
            "action": action,
            "actor_id": None if actor.id is None else str(actor.id),
            "actor_type": actor.type,
            "entity_id": str(document_id),
            "entity_type": entity_type,
            "correlation_id": correlation_id,
            "occurred_at": iso_event(at),
            "details": details,
        },
        attributes={"action": action, "source": AUDIT_SOURCE},
        group_id=str(document_id),
        created_at=at,
    )


def integrity_alert(
    doc: Document, calculated_hash: str | None, verified_by: UUID | None, at: datetime
) -> OutboxEvent:
    """A CRITICAL alert for the compliance dashboard."""
    alert_id = uuid4()
    return OutboxEvent(
        event_id=alert_id,
        destination=Destination.INTEGRITY_ALERTS,
        body={
            "alert_id": str(alert_id),
            "alert_type": "integrity_violation",
            "severity": "CRITICAL",
            "document_id": str(doc.id),
            "filename": doc.filename,
            "entity_id": str(doc.entity_id),
            "entity_type": doc.entity_type.value,
            "expected_hash": doc.sha256_hash,
            "calculated_hash": calculated_hash,
            "verified_by": None if verified_by is None else str(verified_by),
            "recommended_action": "FREEZE_ENTITY",
            "detected_at": iso_event(at),
        },
        attributes={"alert_type": "integrity_violation", "severity": "CRITICAL"},
        group_id=str(doc.id),
        created_at=at,
    )


def upload_events(doc: Document, actor: Actor, correlation_id: str | None) -> list[OutboxEvent]:
    at = doc.created_at
    return [
        document_event("document.uploaded", doc, at),
        audit_event(
            "document.uploaded",
            actor,
            doc.id,
            {
                "filename": doc.filename,
                "sha256_hash": doc.sha256_hash,
                "on_chain_reference": doc.on_chain_reference,
                "entity_type": doc.entity_type.value,
                "entity_id": str(doc.entity_id),
                "document_type": doc.document_type.value,
                "size_bytes": doc.size_bytes,
                "mime_type": doc.mime_type,
            },
            correlation_id,
            at,
        ),
    ]


def verification_events(
    doc: Document,
    intact: bool,
    calculated_hash: str | None,
    actor: Actor,
    correlation_id: str | None,
    at: datetime,
    reason: str | None = None,
) -> list[OutboxEvent]:
    """What one verification announces; ``doc`` is the row before the change.

    ``reason`` (the sweep's ``scheduled_sweep``) goes into the audit events' details.
    """
    extra = {} if reason is None else {"reason": reason}
    if intact:
        return [
            document_event("document.verified", doc, at),
            audit_event(
                "document.verified",
                actor,
                doc.id,
                {
                    "sha256_hash": doc.sha256_hash,
                    "on_chain_reference": doc.on_chain_reference,
                    "calculated_hash": calculated_hash,
                    **extra,
                },
                correlation_id,
                at,
            ),
        ]
    return [
        mismatch_event(doc, calculated_hash, at),
        audit_event(
            "document.mismatch",
            actor,
            doc.id,
            {
                "expected_hash": doc.sha256_hash,
                "calculated_hash": calculated_hash,
                "on_chain_reference": doc.on_chain_reference,
                "filename": doc.filename,
                **extra,
            },
            correlation_id,
            at,
        ),
        integrity_alert(doc, calculated_hash, actor.id, at),
    ]


def archive_events(
    doc: Document,
    actor: Actor,
    correlation_id: str | None,
    at: datetime,
    reason: str | None = None,
) -> list[OutboxEvent]:
    details: dict[str, Any] = {"filename": doc.filename, "sha256_hash": doc.sha256_hash}
    if reason is not None:
        details["reason"] = reason
    return [
        document_event("document.archived", doc, at),
        audit_event("document.archived", actor, doc.id, details, correlation_id, at),
    ]


def disposal_events(
    doc: Document,
    actor: Actor,
    disposition_id: UUID,
    reason: str,
    details: dict[str, Any],
    correlation_id: str | None,
    at: datetime,
) -> list[OutboxEvent]:
    """``document.disposed``: its bytes destroyed by ``disposition_id``, its row a tombstone."""
    announced = document_event("document.disposed", doc, at)
    announced.body["payload"]["disposition_id"] = str(disposition_id)
    audited = {"disposition_id": str(disposition_id), "reason": reason,
               "filename": doc.filename, "sha256_hash": doc.sha256_hash, **details}
    return [
        announced,
        audit_event("document.disposed", actor, doc.id, audited, correlation_id, at),
    ]


def download_issued_event(
    doc: Document,
    actor: Actor,
    expires_in_seconds: int,
    correlation_id: str | None,
    at: datetime,
) -> OutboxEvent:
    return audit_event(
        "document.download_url_issued",
        actor,
        doc.id,
        {"expires_in_seconds": expires_in_seconds, "filename": doc.filename},
        correlation_id,
        at,
    )
