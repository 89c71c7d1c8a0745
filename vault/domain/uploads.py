"""What an upload records: where its bytes go, and the document it becomes.

The upload actor streams the bytes (``validation.Ingest`` hashes and checks
them) and stores them under ``storage_key``; once the client's form is
complete and the bytes are stored, ``new_document`` is the row the store
registers. The ledger reference is the store's to fill in, in the same
transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from vault.domain.models import Actor, Document, DocumentStatus, DocumentType, EntityType
from vault.domain.validation import IngestResult


@attrs.frozen
class UploadForm:
    """The upload's form fields as the client sent them, checked and parsed."""

    entity_id: UUID
    entity_type: EntityType
    document_type: DocumentType
    token_id: int | None
    metadata: dict[str, Any] | None
    filename: str
    actor: Actor


def storage_key(document_id: UUID) -> str:
    """The blob's name: one object per document, named by its id."""
    return f"documents/{document_id}"


def document_of(key: str) -> UUID | None:
    """The document a ``storage_key`` names (None for any other key)."""
    prefix, _, rest = key.partition("/")
    if prefix != "documents":
        return None
    try:
        return UUID(rest)
    except ValueError:
        return None


def new_document(
    document_id: UUID,
    form: UploadForm,
    ingested: IngestResult,
    *,
    mime_type: str,
    storage_bucket: str,
    storage_version_id: str | None,
    at: datetime,
) -> Document:
    """The document an accepted upload becomes: ``uploaded``, nothing verified or archived.

    Uploads are made by users; a form whose actor is the system is a bug.
    """
    if form.actor.id is None:
        raise ValueError("uploads are made by users, not by the system")
    return Document(
        id=document_id,
        entity_type=form.entity_type,
        entity_id=form.entity_id,
        token_id=form.token_id,
        document_type=form.document_type,
        filename=form.filename,
        mime_type=mime_type,
        size_bytes=ingested.size_bytes,
        storage_bucket=storage_bucket,
        storage_key=storage_key(document_id),
        storage_version_id=storage_version_id,
        sha256_hash=ingested.sha256_hash,
        status=DocumentStatus.UPLOADED,
        uploaded_by=form.actor.id,
        verified_by=None,
        archived_by=None,
        archived_at=None,
        hash_verified_at=None,
        on_chain_reference=None,
        metadata=form.metadata,
        created_at=at,
        updated_at=at,
    )
