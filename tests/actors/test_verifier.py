"""The verifier actor: re-hash what the store serves now, compare, record, announce."""

from __future__ import annotations

import hashlib
from pathlib import Path
from uuid import uuid4

import pytest
import trio

from actors.system import Vault
from tests.actors.helpers import (
    a_user,
    archive,
    execute_sql,
    object_path,
    outbox,
    store_document,
    verify,
)
from tests.support import pdf_bytes
from vault.adapters.blobs.local import HEADER_SIZE
from vault.domain.errors import DocumentNotFound
from vault.domain.models import Document, DocumentStatus, Role

FORGED_HASH = "f" * 64


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


async def flip_byte(path: Path, offset: int) -> None:
    await trio.to_thread.run_sync(_flip_byte, path, offset)


async def overwrite_object(vault: Vault, doc: Document, data: bytes) -> None:
    """Replace the stored object with another valid one, through the store's own writer."""
    blobs = vault.backends.blobs

    def write() -> None:
        writer = blobs.open_writer(doc.storage_key)
        writer.write(data)
        writer.commit()

    await vault.backends.in_blobs(write)


async def mismatch_event(vault: Vault, doc: Document) -> dict[str, object]:
    rows = await outbox(vault, doc.id)
    (event,) = [row for row in rows if row.kind == "document.mismatch" and row.body.get("payload")]
    payload: dict[str, object] = event.body["payload"]
    return payload


class TestIntact:
    async def test_an_intact_document_is_verified(self, vault: Vault) -> None:
        """Untouched bytes, row and ledger: status ``verified``, with who and when."""
        doc = await store_document(vault, pdf_bytes(2000))
        auditor = a_user(Role.AUDITOR)
        verified = await verify(vault, doc.id, auditor)
        assert verified.status is DocumentStatus.VERIFIED
        assert verified.verified_by == auditor.id
        assert verified.hash_verified_at is not None
        stored = await vault.backends.in_db(vault.backends.store.get_document, doc.id)
        assert stored.status is DocumentStatus.VERIFIED

    async def test_verification_writes_a_verified_event_and_an_audit_event(
        self, vault: Vault
    ) -> None:
        """``document.verified`` goes to both streams, and no integrity alert is raised."""
        doc = await store_document(vault, pdf_bytes(2000))
        await verify(vault, doc.id)
        rows = await outbox(vault, doc.id)
        verification = sorted(
            (row.destination, row.kind) for row in rows if row.kind == "document.verified"
        )
        assert verification == [
            ("audit_events", "document.verified"),
            ("document_events", "document.verified"),
        ]
        assert not [row for row in rows if row.destination == "integrity_alerts"]

    async def test_an_unknown_document_is_not_found(self, vault: Vault) -> None:
        """Verifying an id nobody stored answers DocumentNotFound, and the verifier runs on."""
        with pytest.raises(DocumentNotFound):
            await verify(vault, uuid4())
        doc = await store_document(vault, pdf_bytes(100))
        assert (await verify(vault, doc.id)).status is DocumentStatus.VERIFIED


class TestTamperedObject:
    async def test_a_flipped_ciphertext_byte_is_a_mismatch_with_no_hash(self, vault: Vault) -> None:
        """An object that fails its integrity check cannot be read: mismatch, hash null."""
        doc = await store_document(vault, pdf_bytes(2000))
        await flip_byte(object_path(vault, doc.storage_key), HEADER_SIZE + 10)
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["calculated_hash"] is None
        assert payload["expected_hash"] == doc.sha256_hash

    async def test_a_mismatch_writes_an_integrity_alert(self, vault: Vault) -> None:
        """A mismatch puts one CRITICAL integrity alert in the outbox, naming the verifier."""
        doc = await store_document(vault, pdf_bytes(2000))
        await flip_byte(object_path(vault, doc.storage_key), HEADER_SIZE + 10)
        auditor = a_user(Role.AUDITOR)
        await verify(vault, doc.id, auditor)
        rows = await outbox(vault, doc.id)
        (alert,) = [row for row in rows if row.destination == "integrity_alerts"]
        assert alert.body["alert_type"] == "integrity_violation"
        assert alert.body["severity"] == "CRITICAL"
        assert alert.body["document_id"] == str(doc.id)
        assert alert.body["expected_hash"] == doc.sha256_hash
        assert alert.body["calculated_hash"] is None
        assert alert.body["verified_by"] == str(auditor.id)

    async def test_a_mismatch_writes_a_mismatch_audit_event(self, vault: Vault) -> None:
        """The audit stream records the mismatch with both hashes."""
        doc = await store_document(vault, pdf_bytes(2000))
        await flip_byte(object_path(vault, doc.storage_key), HEADER_SIZE + 10)
        await verify(vault, doc.id)
        rows = await outbox(vault, doc.id)
        (audit,) = [
            row
            for row in rows
            if row.destination == "audit_events" and row.kind == "document.mismatch"
        ]
        assert audit.body["details"]["expected_hash"] == doc.sha256_hash
        assert audit.body["details"]["calculated_hash"] is None

    async def test_an_object_replaced_by_other_bytes_is_a_mismatch_with_their_hash(
        self, vault: Vault
    ) -> None:
        """A valid object with other content is read, hashed and found different."""
        doc = await store_document(vault, pdf_bytes(2000))
        other = pdf_bytes(2000)
        await overwrite_object(vault, doc, other)
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["calculated_hash"] == hashlib.sha256(other).hexdigest()

    async def test_a_deleted_object_is_a_mismatch_with_no_hash(self, vault: Vault) -> None:
        """A missing object is a mismatch, never an error answer."""
        doc = await store_document(vault, pdf_bytes(2000))
        await trio.to_thread.run_sync(object_path(vault, doc.storage_key).unlink)
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["calculated_hash"] is None


class TestTamperedRecords:
    async def test_an_edited_row_hash_is_a_mismatch(self, vault: Vault) -> None:
        """Rewriting the row's hash makes the intact bytes disagree with the record."""
        doc = await store_document(vault, pdf_bytes(2000))
        await execute_sql(
            vault,
            ("UPDATE documents SET sha256_hash = ? WHERE id = ?", (FORGED_HASH, str(doc.id))),
        )
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["expected_hash"] == FORGED_HASH
        assert payload["calculated_hash"] == doc.sha256_hash

    async def test_an_edited_ledger_hash_is_a_mismatch(self, vault: Vault) -> None:
        """With the append-only trigger dropped, a rewritten ledger hash is still caught."""
        doc = await store_document(vault, pdf_bytes(2000))
        await execute_sql(
            vault,
            ("DROP TRIGGER ledger_entries_no_update", ()),
            (
                "UPDATE ledger_entries SET sha256_hash = ? WHERE document_id = ?",
                (FORGED_HASH, str(doc.id)),
            ),
        )
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["calculated_hash"] == doc.sha256_hash

    async def test_replacing_the_object_and_both_hashes_is_still_a_mismatch(
        self, vault: Vault
    ) -> None:
        """Other bytes plus a matching row and ledger hash break the ledger's chain."""
        doc = await store_document(vault, pdf_bytes(2000))
        other = pdf_bytes(2000)
        other_hash = hashlib.sha256(other).hexdigest()
        await overwrite_object(vault, doc, other)
        await execute_sql(
            vault,
            ("DROP TRIGGER ledger_entries_no_update", ()),
            (
                "UPDATE ledger_entries SET sha256_hash = ? WHERE document_id = ?",
                (other_hash, str(doc.id)),
            ),
            ("UPDATE documents SET sha256_hash = ? WHERE id = ?", (other_hash, str(doc.id))),
        )
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["expected_hash"] == payload["calculated_hash"] == other_hash


class TestArchived:
    async def test_verifying_an_archived_document_keeps_it_archived(self, vault: Vault) -> None:
        """Verification records who and when, but never un-archives."""
        doc = await store_document(vault, pdf_bytes(2000))
        await archive(vault, doc.id)
        auditor = a_user(Role.AUDITOR)
        result = await verify(vault, doc.id, auditor)
        assert result.status is DocumentStatus.ARCHIVED
        assert result.verified_by == auditor.id
        assert result.hash_verified_at is not None
        stored = await vault.backends.in_db(vault.backends.store.get_document, doc.id)
        assert stored.status is DocumentStatus.ARCHIVED

    async def test_a_tampered_archived_document_stays_archived(self, vault: Vault) -> None:
        """Even a mismatch leaves an archived document archived, and still raises the alert."""
        doc = await store_document(vault, pdf_bytes(2000))
        await archive(vault, doc.id)
        await flip_byte(object_path(vault, doc.storage_key), HEADER_SIZE + 10)
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.ARCHIVED
        rows = await outbox(vault, doc.id)
        assert [row.destination for row in rows].count("integrity_alerts") == 1
