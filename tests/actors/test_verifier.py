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
    publish,
    store_document,
    verify,
)
from tests.support import pdf_bytes
from vault.adapters.blobs.local import HEADER_SIZE
from vault.domain.errors import DocumentNotFound
from vault.domain.merkle import leaf_hash
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

    async def test_a_just_uploaded_document_is_proved_at_once(self, vault: Vault) -> None:
        """Verifying a leaf not yet under a checkpoint has the ledger integrate and sign now."""
        doc = await store_document(vault, pdf_bytes(2000))
        assert (await vault.backends.in_db(vault.backends.store.latest_checkpoint)) is None
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.VERIFIED
        checkpoint = await vault.backends.in_db(vault.backends.store.latest_checkpoint)
        assert checkpoint is not None and checkpoint.size == 1

    @pytest.mark.parametrize(
        "tampering",
        [
            # the row: its reference names no leaf
            [("UPDATE documents SET on_chain_reference = ? WHERE id = ?",
              ("0x" + "ab" * 32, "{id}"))],
            # the leaf store: the hash kept beside the leaf
            [("DROP TRIGGER ledger_leaves_no_update", ()),
             ("UPDATE ledger_leaves SET leaf_hash = ? WHERE document_id = ?",
              (FORGED_HASH, "{id}"))],
            # the leaf store: the leaf's own text names another hash
            [("DROP TRIGGER ledger_leaves_no_update", ()),
             ("UPDATE ledger_leaves SET leaf = CAST(replace(CAST(leaf AS TEXT), ?, ?) AS BLOB)"
              " WHERE document_id = ?", ("{hash}", FORGED_HASH, "{id}"))],
            # the tree: the tile's hash of this leaf
            [("DROP TRIGGER ledger_tiles_only_grow", ()),
             ("UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 0", ("{tile:0}",))],
            # the tree: a sibling's hash, so the tree no longer hashes to the signed root
            [("DROP TRIGGER ledger_tiles_only_grow", ()),
             ("UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 0", ("{tile:1}",))],
            # the checkpoint: its signature
            [("DROP TRIGGER ledger_checkpoints_no_update", ()),
             ("UPDATE ledger_checkpoints SET note = replace(note, '— ', '— x')", ())],
            # the checkpoint: its stored root
            [("DROP TRIGGER ledger_checkpoints_no_update", ()),
             ("UPDATE ledger_checkpoints SET root_hash = ?", (b"r" * 32,))],
        ],
        ids=["row reference", "leaf store hash", "leaf text", "tree leaf", "tree sibling",
             "checkpoint signature", "checkpoint root"],
    )  # fmt: skip
    async def test_every_copy_of_the_registration_is_checked(
        self, vault: Vault, tampering: list[tuple[str, tuple[object, ...]]]
    ) -> None:
        """Editing the row, the leaf store, the tree or the checkpoint is a mismatch."""
        doc = await store_document(vault, pdf_bytes(2000))
        await store_document(vault, pdf_bytes(2000))
        assert (await publish(vault)).tree_size == 2
        assert (await verify(vault, doc.id)).status is DocumentStatus.VERIFIED
        tiles = await vault.backends.in_db(vault.backends.store.ledger_tiles, [(0, 0)])
        tile = tiles[(0, 0)]

        def fill(value: object) -> object:
            if value == "{id}":
                return str(doc.id)
            if value == "{hash}":
                return doc.sha256_hash
            if isinstance(value, str) and value.startswith("{tile:"):
                position = int(value[6:-1])
                edited = bytearray(tile)
                edited[position * 32] ^= 1
                return bytes(edited)
            return value

        await execute_sql(
            vault, *[(statement, tuple(fill(v) for v in params)) for statement, params in tampering]
        )
        result = await verify(vault, doc.id)
        assert result.status is DocumentStatus.MISMATCH
        payload = await mismatch_event(vault, doc)
        assert payload["calculated_hash"] == doc.sha256_hash

    async def test_replacing_the_object_and_every_hash_is_still_a_mismatch(
        self, vault: Vault
    ) -> None:
        """Other bytes with the row, the leaf and the leaf store all rewritten to match them:
        the signed tree still holds the old leaf."""
        doc = await store_document(vault, pdf_bytes(2000))
        assert (await verify(vault, doc.id)).status is DocumentStatus.VERIFIED
        other = pdf_bytes(2000)
        other_hash = hashlib.sha256(other).hexdigest()
        stored = await vault.backends.in_db(vault.backends.store.registered_leaf, doc.id)
        assert stored is not None
        forged = stored.leaf.replace(doc.sha256_hash.encode(), other_hash.encode())
        forged_hash = leaf_hash(forged).hex()
        await overwrite_object(vault, doc, other)
        await execute_sql(
            vault,
            ("DROP TRIGGER ledger_leaves_no_update", ()),
            (
                "UPDATE ledger_leaves SET leaf = ?, leaf_hash = ? WHERE document_id = ?",
                (forged, forged_hash, str(doc.id)),
            ),
            (
                "UPDATE documents SET sha256_hash = ?, on_chain_reference = ? WHERE id = ?",
                (other_hash, "0x" + forged_hash, str(doc.id)),
            ),
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
