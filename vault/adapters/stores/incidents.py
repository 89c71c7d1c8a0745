"""Integrity incidents in the SQL store: opened or joined by a mismatch, listed, resolved.

``join_incident`` runs inside ``record_verification``'s transaction, so a
mismatch, its incident, its alert (carrying the incident's id) and the
notification of an incident opened or grown commit together. Two
mismatches of one entity at once meet at the partial unique index (one
open incident an entity): the insert that loses does nothing, and both
read the one open incident.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from vault.adapters.stores.integrity import SqlIntegrity
from vault.adapters.stores.outbox import insert_events
from vault.adapters.stores.rows import as_datetime, as_optional_datetime, as_uuid
from vault.adapters.stores.sql import Q, Row, Session, newest_first
from vault.domain.errors import StoreUnavailable
from vault.domain.incidents import (
    Incident,
    IncidentDocument,
    IncidentNotFound,
    IncidentResolved,
    IncidentStatus,
)
from vault.domain.models import Document, EntityType
from vault.domain.notifications import Detection, incident_detected, incident_resolved
from vault.ports import PageCursor

OPEN_INSERT = Q(
    "INSERT INTO integrity_incidents (incident_id, entity_id, entity_type, status, opened_at,"
    " last_detected_at) VALUES ($id, $entity_id, $entity_type, 'open', $at, $at)"
    " ON CONFLICT (entity_id) WHERE status = 'open' DO NOTHING"
)
# Locked: a resolution committing meanwhile is waited for, and the row is then
# read again as it stands (resolved: no longer matched, so a new one opens).
OPEN_FOR_ENTITY = Q(
    "SELECT incident_id FROM integrity_incidents WHERE entity_id = $entity_id AND status = 'open'"
    "{for_update}"
)
DETECTED = Q(
    "UPDATE integrity_incidents SET last_detected_at = $at"
    " WHERE incident_id = $id AND last_detected_at < $at"
)
DOCUMENT_PUT = Q(
    "INSERT INTO integrity_incident_documents (incident_id, document_id, filename, expected_hash,"
    " calculated_hash, detected_at) VALUES ($id, $document_id, $filename, $expected, $calculated,"
    " $at) ON CONFLICT (incident_id, document_id) DO UPDATE SET"
    " calculated_hash = excluded.calculated_hash, detected_at = excluded.detected_at"
)
_INCIDENT = (
    "SELECT incident_id, entity_id, entity_type, status, opened_at, last_detected_at,"
    " resolved_at, resolved_by, resolution FROM integrity_incidents"
)
ONE = Q(f"{_INCIDENT} WHERE incident_id = $id")
DOCUMENTS_OF = Q(
    "SELECT document_id, filename, expected_hash, calculated_hash, detected_at"
    " FROM integrity_incident_documents WHERE incident_id = $id ORDER BY detected_at, document_id"
)
HOLDS_DOCUMENT = Q(
    "SELECT 1 AS held FROM integrity_incident_documents"
    " WHERE incident_id = $id AND document_id = $document_id"
)
DOCUMENT_COUNT = Q("SELECT COUNT(*) AS n FROM integrity_incident_documents WHERE incident_id = $id")
JOIN_ATTEMPTS = 3

RESOLVE = Q(
    "UPDATE integrity_incidents SET status = 'resolved', resolved_at = $at, resolved_by = $by,"
    " resolution = $resolution WHERE incident_id = $id AND status = 'open'"
)


def join_incident(
    db: Session, doc: Document, calculated_hash: str | None, at: datetime
) -> uuid.UUID:
    """Open ``doc``'s entity's incident or join the open one; add the detection. Its id.

    An incident opened, or one that gains a document, is notified; a document
    detected again only moves its ``detected_at``.
    """
    row = None
    opened = False
    for _ in range(JOIN_ATTEMPTS):
        opened = db.execute(OPEN_INSERT, id=uuid.uuid4(), entity_id=doc.entity_id,
                            entity_type=doc.entity_type.value, at=at) == 1
        row = db.one(OPEN_FOR_ENTITY, entity_id=doc.entity_id)
        if row is not None:
            break
        # The open incident seen by the insert was resolved before the lock
        # was granted: open a new one.
    if row is None:
        raise StoreUnavailable(f"entity {doc.entity_id}: incidents kept changing; try again")
    incident_id = as_uuid(row["incident_id"])
    known = db.one(HOLDS_DOCUMENT, id=incident_id, document_id=doc.id) is not None
    db.execute(DETECTED, id=incident_id, at=at)
    db.execute(DOCUMENT_PUT, id=incident_id, document_id=doc.id, filename=doc.filename,
               expected=doc.sha256_hash, calculated=calculated_hash, at=at)
    if not known:
        counted = db.one(DOCUMENT_COUNT, id=incident_id)
        documents = 1 if counted is None else int(counted["n"])
        insert_events(db, [incident_detected(
            incident_id, Detection(doc, calculated_hash, at), opened=opened, documents=documents
        )])
    return incident_id


class SqlIncidents(SqlIntegrity):
    """Incidents of every SQL ``MetadataStore``."""

    def get_incident(self, incident_id: uuid.UUID) -> Incident:
        with self._reading("get_incident") as db:
            row = db.one(ONE, id=incident_id)
            if row is None:
                raise IncidentNotFound(f"Incident {incident_id} not found")
            return _incident(row, db.all(DOCUMENTS_OF, id=incident_id))

    def list_incidents(
        self, *, entity_id: uuid.UUID | None, status: IncidentStatus | None, limit: int,
        after: PageCursor | None,
    ) -> list[Incident]:
        query, params = newest_first(
            _INCIDENT, at="opened_at", key="incident_id", limit=limit,
            equal={"entity_id": entity_id, "status": None if status is None else status.value},
            after=None if after is None else (after.created_at, after.document_id),
        )
        with self._reading("list_incidents") as db:
            return [
                _incident(row, db.all(DOCUMENTS_OF, id=as_uuid(row["incident_id"])))
                for row in db.all(query, **params)
            ]

    def resolve_incident(
        self, incident_id: uuid.UUID, *, resolved_by: uuid.UUID | None, resolution: str,
        at: datetime,
    ) -> Incident:
        with self._transaction("resolve_incident") as db:
            row = db.one(ONE, id=incident_id)
            if row is None:
                raise IncidentNotFound(f"Incident {incident_id} not found")
            if db.execute(RESOLVE, id=incident_id, at=at, by=resolved_by,
                          resolution=resolution) != 1:
                raise IncidentResolved(f"Incident {incident_id} is already resolved")
            row = db.one(ONE, id=incident_id)
            assert row is not None
            incident = _incident(row, db.all(DOCUMENTS_OF, id=incident_id))
            insert_events(db, [incident_resolved(
                incident_id, incident.entity_id, incident.entity_type,
                documents=len(incident.documents), resolved_by=resolved_by,
                resolution=resolution, at=at,
            )])
            return incident


def _incident(row: Row, documents: list[Row]) -> Incident:
    by = row["resolved_by"]
    return Incident(
        incident_id=as_uuid(row["incident_id"]), entity_id=as_uuid(row["entity_id"]),
        entity_type=EntityType(row["entity_type"]), status=IncidentStatus(row["status"]),
        opened_at=as_datetime(row["opened_at"]),
        last_detected_at=as_datetime(row["last_detected_at"]),
        documents=tuple(
            IncidentDocument(
                document_id=as_uuid(d["document_id"]), filename=str(d["filename"]),
                expected_hash=str(d["expected_hash"]),
                calculated_hash=None if d["calculated_hash"] is None else str(d["calculated_hash"]),
                detected_at=as_datetime(d["detected_at"]),
            )
            for d in documents
        ),
        resolved_at=as_optional_datetime(row["resolved_at"]),
        resolved_by=None if by is None else as_uuid(by),
        resolution=None if row["resolution"] is None else str(row["resolution"]),
    )
