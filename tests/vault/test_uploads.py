"""What an upload records: its storage key and the document it becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from vault.domain.models import Actor, DocumentStatus, DocumentType, EntityType, Role
from vault.domain.uploads import UploadForm, new_document, storage_key
from vault.domain.validation import IngestResult

AT = datetime(2025, 10, 23, 12, 0, tzinfo=UTC)


def a_form(actor: Actor | None = None) -> UploadForm:
    return UploadForm(
        entity_id=uuid4(), entity_type=EntityType.DEAL, document_type=DocumentType.SUBSCRIPTION,
        token_id=7, metadata={"tags": ["q4"]}, filename="deal.pdf",
        actor=actor or Actor.user(uuid4(), Role.ISSUER),
    )  # fmt: skip


def test_storage_key_names_the_document() -> None:
    """One object per document, under ``documents/`` and its id."""
    doc_id = UUID("5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14")
    assert storage_key(doc_id) == "documents/5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14"


def test_new_document_takes_form_bytes_and_storage() -> None:
    """The row carries the form's fields, the bytes' hash and size, and where they went."""
    form, doc_id = a_form(), uuid4()
    doc = new_document(
        doc_id, form, IngestResult(sha256_hash="f" * 64, size_bytes=123),
        mime_type="application/pdf", storage_bucket="vault-docs", storage_version_id="v1",
        at=AT,
    )  # fmt: skip
    assert (doc.id, doc.entity_id, doc.entity_type, doc.document_type) == (
        doc_id, form.entity_id, EntityType.DEAL, DocumentType.SUBSCRIPTION,
    )  # fmt: skip
    assert (doc.token_id, doc.metadata, doc.filename) == (7, {"tags": ["q4"]}, "deal.pdf")
    assert (doc.sha256_hash, doc.size_bytes, doc.mime_type) == ("f" * 64, 123, "application/pdf")
    assert (doc.storage_bucket, doc.storage_key, doc.storage_version_id) == (
        "vault-docs", storage_key(doc_id), "v1",
    )  # fmt: skip
    assert doc.uploaded_by == form.actor.id
    assert doc.status is DocumentStatus.UPLOADED
    assert (doc.created_at, doc.updated_at) == (AT, AT)


def test_new_document_is_neither_verified_nor_archived_nor_registered() -> None:
    """Nothing about verification, archiving or the ledger is set yet."""
    doc = new_document(
        uuid4(), a_form(), IngestResult("f" * 64, 1), mime_type="text/plain",
        storage_bucket="local", storage_version_id=None, at=AT,
    )  # fmt: skip
    assert (doc.verified_by, doc.hash_verified_at) == (None, None)
    assert (doc.archived_by, doc.archived_at) == (None, None)
    assert doc.on_chain_reference is None


def test_the_system_cannot_upload() -> None:
    """Uploads are made by users; a form whose actor is the system is refused."""
    with pytest.raises(ValueError, match="users"):
        new_document(
            uuid4(), a_form(Actor.system()), IngestResult("f" * 64, 1), mime_type="text/plain",
            storage_bucket="local", storage_version_id=None, at=AT,
        )  # fmt: skip
