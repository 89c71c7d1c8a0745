"""Event builders: the exact shapes of the contract's Events section."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from vault.domain.events import (
    AUDIT_SOURCE,
    Destination,
    archive_events,
    download_issued_event,
    upload_events,
    verification_events,
)
from vault.domain.models import Actor, Document, DocumentStatus, DocumentType, EntityType, Role

EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AUDIT_KEYS = {"event_id", "source", "action", "actor_id", "actor_type", "entity_id",
              "entity_type", "correlation_id", "occurred_at", "details"}


def _doc() -> Document:
    now = datetime(2025, 10, 23, 12, 34, 56, 789123, tzinfo=UTC)
    return Document(
        id=uuid.uuid4(), entity_type=EntityType.ISSUER, entity_id=uuid.uuid4(), token_id=None,
        document_type=DocumentType.KYC, filename="a.pdf", mime_type="application/pdf",
        size_bytes=10, storage_bucket="local", storage_key="documents/x",
        storage_version_id=None, sha256_hash="ab" * 32, status=DocumentStatus.UPLOADED,
        uploaded_by=uuid.uuid4(), verified_by=None, archived_by=None, archived_at=None,
        hash_verified_at=None, on_chain_reference="0x" + "cd" * 32, metadata=None,
        created_at=now, updated_at=now,
    )


ACTOR = Actor.user(uuid.uuid4(), Role.ISSUER)


class TestDocumentEvents:
    def test_uploaded_shape(self) -> None:
        """document.uploaded carries event_id, type, ms-Z time and the payload with status."""
        doc = _doc()
        event = upload_events(doc, ACTOR, "req-1")[0]
        assert event.destination is Destination.DOCUMENT_EVENTS
        assert event.attributes == {"event_type": "document.uploaded"}
        assert set(event.body) == {"event_id", "event_type", "occurred_at", "payload"}
        assert event.body["occurred_at"] == "2025-10-23T12:34:56.789Z"
        assert event.body["payload"] == {
            "document_id": str(doc.id), "entity_type": "issuer", "entity_id": str(doc.entity_id),
            "sha256_hash": doc.sha256_hash, "status": "uploaded",
        }
        assert event.body["event_id"] == str(event.event_id)

    def test_mismatch_shape(self) -> None:
        """document.mismatch carries expected and calculated hashes, and an alert follows."""
        doc = _doc()
        at = datetime.now(UTC)
        events = verification_events(doc, False, None, ACTOR, "req-2", at)
        kinds = [e.destination for e in events]
        assert kinds == [Destination.DOCUMENT_EVENTS, Destination.AUDIT_EVENTS,
                         Destination.INTEGRITY_ALERTS]
        assert events[0].body["payload"] == {
            "document_id": str(doc.id), "entity_id": str(doc.entity_id),
            "expected_hash": doc.sha256_hash, "calculated_hash": None,
        }
        alert = events[2].body
        assert set(alert) == {
            "alert_id", "alert_type", "severity", "document_id", "filename", "entity_id",
            "entity_type", "expected_hash", "calculated_hash", "verified_by",
            "recommended_action", "detected_at",
        }
        assert (alert["alert_type"], alert["severity"], alert["recommended_action"]) == (
            "integrity_violation", "CRITICAL", "FREEZE_ENTITY")
        assert EVENT_TIME.match(alert["detected_at"])


class TestAuditEvents:
    def test_uploaded_audit_shape(self) -> None:
        """The audit record has exactly the contract's keys and the upload details."""
        doc = _doc()
        audit = upload_events(doc, ACTOR, "req-1")[1]
        assert set(audit.body) == AUDIT_KEYS
        assert audit.attributes == {"action": "document.uploaded", "source": AUDIT_SOURCE}
        assert audit.body["entity_id"] == str(doc.id)
        assert audit.body["entity_type"] == "document"
        assert audit.body["correlation_id"] == "req-1"
        assert {"filename", "sha256_hash", "on_chain_reference"} <= set(audit.body["details"])

    def test_cascade_archive_is_by_the_system(self) -> None:
        """A cascade archive is attributed to the system, with the reason."""
        audit = archive_events(_doc(), Actor.system(), "evt", datetime.now(UTC),
                               reason="entity_deleted")[1]
        assert audit.body["actor_id"] is None
        assert audit.body["actor_type"] == "system"
        assert audit.body["details"]["reason"] == "entity_deleted"
        assert audit.body["details"]["filename"] == "a.pdf"

    def test_download_url_issued(self) -> None:
        """Issuing a URL is audited with its lifetime."""
        audit = download_issued_event(_doc(), ACTOR, 300, "req-3", datetime.now(UTC))
        assert audit.body["action"] == "document.download_url_issued"
        assert audit.body["details"]["expires_in_seconds"] == 300
