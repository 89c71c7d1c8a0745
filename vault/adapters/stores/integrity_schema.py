"""Schema 4: the integrity sweep's claims and its passes, on both databases.

``integrity_sweep_claims`` holds one row a document the sweep has taken:
its lease, so two processes never re-hash one document at once (and after
the verification, the document's new ``hash_verified_at`` keeps it from
being due again within the period). ``integrity_sweep`` is one row: when
a pass last found nothing left to do.

``integrity_incidents`` groups mismatches by entity: at most one open
incident an entity (a partial unique index), which a mismatch opens or
joins; ``integrity_incident_documents`` holds each document's latest
detection in it. ``entity_freezes`` is each entity's freeze as it stands
(its history is in the audit events).
"""

from __future__ import annotations

from typing import Final

_TABLES = """
    CREATE TABLE IF NOT EXISTS integrity_sweep_claims (
        document_id {uuid} PRIMARY KEY,
        leased_until {timestamp} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS integrity_sweep (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_pass_completed_at {timestamp}
    );
    CREATE INDEX IF NOT EXISTS documents_hash_verified_at ON documents (hash_verified_at, id);
    CREATE INDEX IF NOT EXISTS documents_never_verified
        ON documents (created_at, id) WHERE hash_verified_at IS NULL;
    CREATE TABLE IF NOT EXISTS integrity_incidents (
        incident_id {uuid} PRIMARY KEY,
        entity_id {uuid} NOT NULL,
        entity_type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        opened_at {timestamp} NOT NULL,
        last_detected_at {timestamp} NOT NULL,
        resolved_at {timestamp},
        resolved_by {uuid},
        resolution TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS integrity_incidents_one_open
        ON integrity_incidents (entity_id) WHERE status = 'open';
    CREATE INDEX IF NOT EXISTS integrity_incidents_newest
        ON integrity_incidents (opened_at, incident_id);
    CREATE TABLE IF NOT EXISTS integrity_incident_documents (
        incident_id {uuid} NOT NULL,
        document_id {uuid} NOT NULL,
        filename TEXT NOT NULL,
        expected_hash TEXT NOT NULL,
        calculated_hash TEXT,
        detected_at {timestamp} NOT NULL,
        PRIMARY KEY (incident_id, document_id)
    );
    CREATE TABLE IF NOT EXISTS entity_freezes (
        entity_id {uuid} PRIMARY KEY,
        frozen {boolean} NOT NULL,
        since {timestamp},
        reason TEXT,
        incident_id {uuid},
        frozen_by {uuid},
        updated_at {timestamp} NOT NULL
    )
"""


def _tables(**types: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _TABLES.format(**types).split(";"))


SQLITE: Final[tuple[str, ...]] = _tables(uuid="TEXT", timestamp="TEXT", boolean="INTEGER")
POSTGRES: Final[tuple[str, ...]] = _tables(uuid="UUID", timestamp="TIMESTAMPTZ", boolean="BOOLEAN")
