"""The vault's nouns: documents, actors, roles and the enums the contract fixes."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import attrs


class EntityType(enum.StrEnum):
    ISSUER = "issuer"
    INVESTOR = "investor"
    DEAL = "deal"
    TOKEN = "token"
    COMPLIANCE = "compliance"


class DocumentType(enum.StrEnum):
    OPERATING_AGREEMENT = "operating_agreement"
    OFFERING_MEMORANDUM = "offering_memorandum"
    SUBSCRIPTION = "subscription"
    KYC = "kyc"
    AUDIT_REPORT = "audit_report"
    OTHER = "other"


class DocumentStatus(enum.StrEnum):
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    ARCHIVED = "archived"
    DISPOSED = "disposed"
    """A tombstone: the bytes were destroyed by a disposition; the record stays."""


class Role(enum.StrEnum):
    ADMIN = "admin"
    ISSUER = "issuer"
    INVESTOR = "investor"
    AUDITOR = "auditor"
    COMPLIANCE_OFFICER = "compliance_officer"


class Action(enum.StrEnum):
    """What an actor asks to do; the values are the permission service's names."""

    UPLOAD = "document:upload"
    DOWNLOAD = "document:download"
    VERIFY = "document:verify"
    ARCHIVE = "document:archive"


@attrs.frozen
class Actor:
    """Who is making a request: a user with a role, or the system itself."""

    id: UUID | None
    role: Role | None
    type: Literal["user", "system"] = "user"

    @classmethod
    def user(cls, actor_id: UUID, role: Role) -> Actor:
        return cls(id=actor_id, role=role, type="user")

    @classmethod
    def system(cls) -> Actor:
        return cls(id=None, role=None, type="system")


@attrs.frozen
class Document:
    """One stored document, as the ``documents`` table holds it."""

    id: UUID
    entity_type: EntityType
    entity_id: UUID
    token_id: int | None
    document_type: DocumentType
    filename: str
    mime_type: str
    size_bytes: int
    storage_bucket: str
    storage_key: str
    storage_version_id: str | None
    sha256_hash: str
    status: DocumentStatus
    uploaded_by: UUID
    verified_by: UUID | None
    archived_by: UUID | None
    archived_at: datetime | None
    hash_verified_at: datetime | None
    on_chain_reference: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_archived(self) -> bool:
        """Archived or, beyond that, disposed of: no longer live."""
        return self.status in (DocumentStatus.ARCHIVED, DocumentStatus.DISPOSED)

    @property
    def is_disposed(self) -> bool:
        return self.status is DocumentStatus.DISPOSED


@attrs.frozen
class LedgerEntry:
    """One link of the append-only hash chain; ``reference`` is what documents cite."""

    seq: int
    entry_hash: str
    prev_hash: str
    document_id: UUID
    sha256_hash: str
    registered_at: datetime

    @property
    def reference(self) -> str:
        return "0x" + self.entry_hash


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_response(moment: datetime | None) -> str | None:
    """Timestamps in responses: ISO 8601 with offset."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:  # stores hand back UTC already; skip the conversion then
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def iso_event(moment: datetime) -> str:
    """Timestamps in events: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def document_json(doc: Document) -> dict[str, Any]:
    """The contract's ``Document`` object: exactly these fields, no more.

    UUIDs and enums are left as they are for the JSON encoder (orjson writes
    them as canonical strings without a Python-level detour); timestamps are
    formatted here, always with microseconds.
    """
    return {
        "id": doc.id,
        "entity_type": doc.entity_type,
        "entity_id": doc.entity_id,
        "token_id": doc.token_id,
        "document_type": doc.document_type,
        "filename": doc.filename,
        "mime_type": doc.mime_type,
        "size_bytes": doc.size_bytes,
        "storage_bucket": doc.storage_bucket,
        "storage_key": doc.storage_key,
        "sha256_hash": doc.sha256_hash,
        "status": doc.status,
        "uploaded_by": doc.uploaded_by,
        "verified_by": doc.verified_by,
        "archived_by": doc.archived_by,
        "archived_at": iso_response(doc.archived_at),
        "hash_verified_at": iso_response(doc.hash_verified_at),
        "on_chain_reference": doc.on_chain_reference,
        "metadata": doc.metadata,
        "created_at": iso_response(doc.created_at),
        "updated_at": iso_response(doc.updated_at),
    }
