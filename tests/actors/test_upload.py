"""The upload actor, driven through its mailbox as the HTTP handler drives it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import trio

from actors.runtime import ActorState, RestartPolicy
from actors.system import Sizing, Vault
from actors.upload import UploadAbandoned
from tests.actors.helpers import (
    archive,
    begin_upload,
    blob_root,
    data_keys,
    files_under,
    object_path,
    outbox,
    read_back,
    store_document,
    upload_form,
)
from tests.support import pdf_bytes, test_settings
from vault.config import Settings
from vault.domain.errors import (
    Busy,
    DocumentNotFound,
    DuplicateDocument,
    EmptyFile,
    FileTooLarge,
    InvalidFileType,
)
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.merkle import leaf_hash
from vault.domain.models import Document, DocumentStatus
from vault.domain.uploads import storage_key

SIZE_LIMIT = 4096
CHUNK = 64 * 1024


async def stored_row(vault: Vault, doc: Document) -> Document:
    store = vault.backends.store
    return await vault.backends.in_db(store.get_document, doc.id)


class TestStoring:
    async def test_the_stored_bytes_read_back_identical(self, vault: Vault) -> None:
        """What the blob store serves for the document is exactly what was uploaded."""
        data = pdf_bytes(3 * 1024 * 1024 + 17)
        doc = await store_document(vault, data)
        assert await read_back(vault, doc) == data

    async def test_the_document_records_size_hash_and_form(self, vault: Vault) -> None:
        """The answer carries the bytes' size and SHA-256 and the form's fields."""
        data = pdf_bytes(5000)
        form = upload_form(filename="deal.pdf")
        doc = await store_document(vault, data, form)
        assert doc.size_bytes == len(data)
        assert doc.sha256_hash == hashlib.sha256(data).hexdigest()
        assert (doc.entity_id, doc.filename, doc.uploaded_by) == (
            form.entity_id,
            "deal.pdf",
            form.actor.id,
        )
        assert doc.status is DocumentStatus.UPLOADED
        assert doc.storage_key == storage_key(doc.id)

    async def test_the_row_is_stored_as_answered(self, vault: Vault) -> None:
        """The metadata row holds the very document the actor answered."""
        doc = await store_document(vault, pdf_bytes(100))
        assert await stored_row(vault, doc) == doc

    async def test_the_log_registers_the_hash(self, vault: Vault) -> None:
        """``on_chain_reference`` is the leaf hash of a registered leaf naming this hash."""
        doc = await store_document(vault, pdf_bytes(100))
        store = vault.backends.store
        stored = await vault.backends.in_db(store.registered_leaf, doc.id)
        assert stored is not None
        assert doc.on_chain_reference == "0x" + leaf_hash(stored.leaf).hex()
        leaf = Leaf.parse(stored.leaf)
        assert (leaf.kind, leaf.document_id, leaf.sha256) == (
            LeafKind.REGISTERED, doc.id, doc.sha256_hash
        )

    async def test_an_upload_writes_a_document_event_and_an_audit_event(self, vault: Vault) -> None:
        """One ``document.uploaded`` document event and one audit event, with the request id."""
        doc = await store_document(vault, pdf_bytes(100))
        rows = await outbox(vault, doc.id)
        assert sorted((row.destination, row.kind) for row in rows) == [
            ("audit_events", "document.uploaded"),
            ("document_events", "document.uploaded"),
        ]
        document_event = next(row for row in rows if row.destination == "document_events")
        assert document_event.body["payload"] == {
            "document_id": str(doc.id),
            "entity_type": "issuer",
            "entity_id": str(doc.entity_id),
            "sha256_hash": doc.sha256_hash,
            "status": "uploaded",
        }
        audit = next(row for row in rows if row.destination == "audit_events")
        assert audit.body["correlation_id"] == "req-actor-suite"
        assert audit.body["details"]["on_chain_reference"] == doc.on_chain_reference


class TestRefusals:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", max_upload_file_size_bytes=SIZE_LIMIT)

    async def test_a_file_over_the_limit_is_too_large(self, vault: Vault) -> None:
        """One byte over the configured limit is FileTooLarge, naming the limit."""
        with pytest.raises(FileTooLarge) as caught:
            await store_document(vault, pdf_bytes(SIZE_LIMIT + 1))
        assert caught.value.max_size_bytes == SIZE_LIMIT

    async def test_a_file_at_the_limit_is_accepted(self, vault: Vault) -> None:
        """The limit itself is allowed."""
        doc = await store_document(vault, pdf_bytes(SIZE_LIMIT))
        assert doc.size_bytes == SIZE_LIMIT

    async def test_a_file_too_large_leaves_no_object_behind(self, vault: Vault) -> None:
        """A refused oversized upload leaves no file under the blob root, finished or not."""
        with pytest.raises(FileTooLarge):
            await store_document(vault, [pdf_bytes(1024)] + [b"x" * 1024] * 16)
        assert await files_under(blob_root(vault)) == []

    async def test_an_oversized_stream_is_refused_before_its_end(self, vault: Vault) -> None:
        """The actor stops reading an oversized file part-way: the feeder is cut off early."""
        chunks = [pdf_bytes(CHUNK)] + [b"x" * CHUNK] * 63
        pending = await begin_upload(vault)
        sent = 0
        with trio.fail_after(10), pending.chunks_send:
            try:
                for chunk in chunks:
                    await pending.chunks_send.send(chunk)
                    sent += 1
            except trio.BrokenResourceError:
                pass
        pending.complete(upload_form())
        with pytest.raises(FileTooLarge):
            await pending.result()
        assert sent < len(chunks) // 2

    async def test_bytes_unlike_the_declared_type_are_refused(self, vault: Vault) -> None:
        """A file declared as PDF that does not start like one is InvalidFileType."""
        with pytest.raises(InvalidFileType):
            await store_document(vault, b"GIF89a not a pdf at all")
        assert await files_under(blob_root(vault)) == []

    async def test_a_declared_type_outside_the_allowed_list_is_refused(self, vault: Vault) -> None:
        """A MIME type not in ``ALLOWED_MIME_TYPES`` is InvalidFileType, whatever the bytes."""
        with pytest.raises(InvalidFileType) as caught:
            await store_document(vault, b"PK\x03\x04 zipped", mime="application/zip")
        assert "application/pdf" in caught.value.allowed_types
        assert await files_under(blob_root(vault)) == []

    async def test_an_empty_file_is_refused(self, vault: Vault) -> None:
        """Zero bytes is EmptyFile, and nothing is stored."""
        with pytest.raises(EmptyFile):
            await store_document(vault, [])
        assert await files_under(blob_root(vault)) == []


class TestAbandon:
    async def test_a_form_closed_empty_abandons_the_upload(self, vault: Vault) -> None:
        """Without a form the actor answers UploadAbandoned and keeps neither object nor row."""
        document_id = uuid4()
        with pytest.raises(UploadAbandoned):
            await store_document(vault, pdf_bytes(2048), document_id=document_id, abandon=True)
        assert await files_under(blob_root(vault)) == []
        with pytest.raises(DocumentNotFound):
            await vault.backends.in_db(vault.backends.store.get_document, document_id)
        assert await outbox(vault, document_id) == []


class TestDuplicates:
    async def test_the_same_bytes_for_the_same_entity_are_a_duplicate(self, vault: Vault) -> None:
        """A second upload of identical bytes names the first document."""
        data = pdf_bytes(1000)
        first = await store_document(vault, data, upload_form(entity_id := uuid4()))
        with pytest.raises(DuplicateDocument) as caught:
            await store_document(vault, data, upload_form(entity_id))
        assert caught.value.existing_document_id == first.id
        assert await files_under(blob_root(vault) / "objects") == [
            object_path(vault, first.storage_key)
        ]

    async def test_the_same_bytes_for_another_entity_are_not_a_duplicate(
        self, vault: Vault
    ) -> None:
        """Duplicate detection is per entity."""
        data = pdf_bytes(1000)
        first = await store_document(vault, data, upload_form())
        second = await store_document(vault, data, upload_form())
        assert first.sha256_hash == second.sha256_hash
        assert first.id != second.id

    async def test_concurrent_identical_uploads_store_exactly_one(self, vault: Vault) -> None:
        """Eight simultaneous uploads of one file for one entity: one stored, seven duplicates."""
        data = pdf_bytes(200_000)
        entity_id = uuid4()
        outcomes: list[Any] = []

        async def one() -> None:
            try:
                outcomes.append(await store_document(vault, data, upload_form(entity_id)))
            except DuplicateDocument as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)

        stored = [o for o in outcomes if isinstance(o, Document)]
        duplicates = [o for o in outcomes if isinstance(o, DuplicateDocument)]
        assert len(stored) == 1
        assert len(duplicates) == 7
        assert {d.existing_document_id for d in duplicates} == {stored[0].id}
        assert await files_under(blob_root(vault)) == [object_path(vault, stored[0].storage_key)]
        assert data_keys(vault) == 1  # the refused uploads' keys went with their files

    async def test_an_archived_document_no_longer_counts_as_a_duplicate(self, vault: Vault) -> None:
        """Once the first copy is archived, the same bytes may be stored again."""
        data = pdf_bytes(1000)
        entity_id = uuid4()
        first = await store_document(vault, data, upload_form(entity_id))
        await archive(vault, first.id)
        again = await store_document(vault, data, upload_form(entity_id))
        assert again.id != first.id


class TestBackpressure:
    @pytest.fixture
    def sizing(self) -> Sizing:
        return Sizing(upload_mailbox=1, upload_concurrency=1)

    async def test_a_full_upload_mailbox_is_busy_at_the_deadline(self, vault: Vault) -> None:
        """With one upload running and one queued, the next waits and is Busy at its deadline."""
        in_progress = await begin_upload(vault)
        queued = await begin_upload(vault)
        assert vault.upload.depth() == 1

        deadline = trio.current_time() + 0.2
        with pytest.raises(Busy):
            await begin_upload(vault, deadline=deadline)
        assert trio.current_time() >= deadline
        assert vault.upload.depth() == 1

        for pending in (in_progress, queued):
            pending.complete(None)
            await pending.feed([pdf_bytes(100)])
            with pytest.raises(UploadAbandoned):
                await pending.result()


class ExplodingWriter:
    """A blob writer whose first write fails with an error no adapter should raise."""

    def write(self, chunk: bytes) -> None:
        raise RuntimeError("disk controller on fire")

    def commit(self) -> str | None:
        raise AssertionError("never reached")

    def abort(self) -> None:
        pass


class TestActorFailure:
    @pytest.fixture
    def sizing(self) -> Sizing:
        return Sizing(upload_mailbox=2, upload_concurrency=1, restart=RestartPolicy(max_restarts=0))

    async def test_a_queued_upload_is_released_when_the_actor_fails_for_good(
        self, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The handler feeding a queued upload is told at once, instead of blocking forever."""
        monkeypatch.setattr(vault.backends.blobs, "open_writer", lambda key: ExplodingWriter())
        crashing = await begin_upload(vault)
        queued = await begin_upload(vault)

        with trio.fail_after(10):
            await crashing.feed([pdf_bytes(100)])
            with pytest.raises(trio.EndOfChannel):
                await queued.reply_recv.receive()
            # More chunks than the channel buffers: each must be refused, not wait forever.
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(32):
                    await queued.chunks_send.send(b"x" * 1024)
        assert vault.upload.health.state is ActorState.FAILED
        queued.close()
        crashing.close()
