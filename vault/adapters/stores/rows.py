"""Pure row conversions shared by the SQL ``MetadataStore`` backends.

Nothing here does I/O or knows a driver. ``document_values`` and
``event_values`` give a row's values as plain Python (UUIDs, aware
datetimes, enums, dicts for JSON), which each dialect binds its own way.
Each decoder accepts either the
text a store without native types keeps (SQLite: canonical UUID text, ISO
8601 timestamps, JSON text) or the native value a driver such as psycopg
returns (``UUID``, aware ``datetime``, parsed JSON), so one set of
functions turns any backend's rows, keyed by column name, into the domain's
values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType, LedgerEntry

DOCUMENT_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "created_at",
    "updated_at",
    "entity_type",
    "entity_id",
    "token_id",
    "document_type",
    "filename",
    "mime_type",
    "size_bytes",
    "storage_bucket",
    "storage_key",
    "storage_version_id",
    "sha256_hash",
    "hash_verified_at",
    "status",
    "on_chain_reference",
    "uploaded_by",
    "verified_by",
    "archived_by",
    "archived_at",
    "metadata",
)
"""The seed's ``documents`` table, column for column, in its order."""

PROCESSED_EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "created_at",
    "updated_at",
    "event_id",
    "source",
    "action",
    "entity_id",
    "entity_type",
)
"""The seed's ``processed_events`` table, column for column, in its order."""

LEDGER_COLUMNS: Final[tuple[str, ...]] = (
    "seq",
    "entry_hash",
    "prev_hash",
    "document_id",
    "sha256_hash",
    "registered_at",
)
"""What ``ledger_entry_from_row`` reads from ``ledger_entries``."""

OUTBOX_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "event_id",
    "destination",
    "body",
    "attributes",
    "group_id",
    "created_at",
    "attempts",
)
"""What ``outbox_row_from_row`` reads from ``outbox``."""


def document_values(doc: Document) -> dict[str, Any]:
    """A ``documents`` row's values by column, as Python values for a dialect to bind."""
    return {
        "id": doc.id,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
        "entity_type": EntityType(doc.entity_type),
        "entity_id": doc.entity_id,
        "token_id": doc.token_id,
        "document_type": DocumentType(doc.document_type),
        "filename": doc.filename,
        "mime_type": doc.mime_type,
        "size_bytes": doc.size_bytes,
        "storage_bucket": doc.storage_bucket,
        "storage_key": doc.storage_key,
        "storage_version_id": doc.storage_version_id,
        "sha256_hash": doc.sha256_hash,
        "hash_verified_at": doc.hash_verified_at,
        "status": DocumentStatus(doc.status),
        "on_chain_reference": doc.on_chain_reference,
        "uploaded_by": doc.uploaded_by,
        "verified_by": doc.verified_by,
        "archived_by": doc.archived_by,
        "archived_at": doc.archived_at,
        "metadata": doc.metadata,
    }


def event_values(event: OutboxEvent) -> dict[str, Any]:
    """An ``outbox`` insert's values by column (delivery columns take their defaults)."""
    return {
        "event_id": event.event_id,
        "destination": Destination(event.destination),
        "body": event.body,
        "attributes": event.attributes,
        "group_id": event.group_id,
        "created_at": event.created_at,
    }


def as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def as_optional_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else as_uuid(value)


def as_datetime(value: Any) -> datetime:
    """An aware UTC datetime, from ISO text or a driver's datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        # Only written by hand or by an old schema's defaults: those are UTC.
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_optional_datetime(value: Any) -> datetime | None:
    return None if value is None else as_datetime(value)


def as_json_object(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def document_from_row(row: Mapping[str, Any]) -> Document:
    """A ``Document`` from a ``documents`` row keyed by column name."""
    return Document(
        id=as_uuid(row["id"]),
        entity_type=EntityType(row["entity_type"]),
        entity_id=as_uuid(row["entity_id"]),
        token_id=None if row["token_id"] is None else int(row["token_id"]),
        document_type=DocumentType(row["document_type"]),
        filename=row["filename"],
        mime_type=row["mime_type"],
        size_bytes=int(row["size_bytes"]),
        storage_bucket=row["storage_bucket"],
        storage_key=row["storage_key"],
        storage_version_id=row["storage_version_id"],
        sha256_hash=row["sha256_hash"],
        status=DocumentStatus(row["status"]),
        uploaded_by=as_uuid(row["uploaded_by"]),
        verified_by=as_optional_uuid(row["verified_by"]),
        archived_by=as_optional_uuid(row["archived_by"]),
        archived_at=as_optional_datetime(row["archived_at"]),
        hash_verified_at=as_optional_datetime(row["hash_verified_at"]),
        on_chain_reference=row["on_chain_reference"],
        metadata=as_json_object(row["metadata"]),
        created_at=as_datetime(row["created_at"]),
        updated_at=as_datetime(row["updated_at"]),
    )


def ledger_entry_from_row(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        seq=int(row["seq"]),
        entry_hash=row["entry_hash"],
        prev_hash=row["prev_hash"],
        document_id=as_uuid(row["document_id"]),
        sha256_hash=row["sha256_hash"],
        registered_at=as_datetime(row["registered_at"]),
    )


def outbox_row_from_row(row: Mapping[str, Any]) -> OutboxRow:
    body = as_json_object(row["body"])
    attributes = as_json_object(row["attributes"])
    return OutboxRow(
        id=int(row["id"]),
        event=OutboxEvent(
            event_id=as_uuid(row["event_id"]),
            destination=Destination(row["destination"]),
            body={} if body is None else body,
            attributes={} if attributes is None else {k: str(v) for k, v in attributes.items()},
            group_id=row["group_id"],
            created_at=as_datetime(row["created_at"]),
        ),
        attempts=int(row["attempts"]),
    )
