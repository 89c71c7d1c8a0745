"""The upload actor: streaming ingest of one document at a time per slot.

Backpressure: the HTTP handler feeds the file's bytes into a small bounded
channel carried by the message; this actor's pace (hashing, encrypting,
writing) is the client's pace, down to TCP.

Errors: a ``VaultError`` (empty file, wrong type, too large, duplicate,
store down) goes back in the reply and nothing is left behind: the staged
object is aborted, or deleted if its record could not be written. A record
that failed in any other way than as a duplicate may still have committed
(a connection lost while PostgreSQL committed): its blob is deleted only
once the store says the row is not there, and kept when it cannot say; the
start-up sweep (``actors/housekeeping.py``) removes a kept blob that no row
names. A blob without a row costs space; a row without its blob is a lost
document.

Cancellation: when the caller goes away, the form channel closes empty and
the upload is abandoned the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import attrs
import structlog
import trio
from structlog.contextvars import bound_contextvars

from actors.deps import Backends
from actors.runtime import Mailbox, Reply, respond, serve_mailbox
from vault.domain.errors import DuplicateDocument, VaultError
from vault.domain.events import upload_events
from vault.domain.models import Document, utcnow
from vault.domain.uploads import UploadForm, new_document, storage_key
from vault.domain.validation import Ingest, IngestResult
from vault.ports import BlobWriter

log = structlog.get_logger("vault.upload")

BATCH_BYTES = 1 << 20
"""Bytes gathered before one trip to a worker thread (hash + encrypt + write)."""


@attrs.frozen
class StoreDocument:
    """Ingest one file from ``chunks``, then record it as ``form`` describes.

    ``form`` carries exactly one ``UploadForm`` once the request's form is
    complete and valid; closed without one, the upload is abandoned.
    """

    document_id: UUID
    declared_mime: str
    chunks: trio.MemoryReceiveChannel[bytes]
    form: trio.MemoryReceiveChannel[UploadForm]
    correlation_id: str | None
    reply: Reply[Document]


class UploadAbandoned(VaultError):
    """The request ended before its form was complete; nothing was stored."""


class UploadActor:
    name = "upload"

    def __init__(
        self,
        mailbox: Mailbox[StoreDocument],
        backends: Backends,
        *,
        concurrency: int,
        committed: Callable[[], None],
    ) -> None:
        self.mailbox = mailbox
        self.backends = backends
        self.concurrency = concurrency
        self.committed = committed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own streaming ingest: ``concurrency`` uploads at a time."""
        await serve_mailbox(
            self.mailbox, self._handle, concurrency=self.concurrency, task_status=task_status
        )

    async def _handle(self, msg: StoreDocument) -> None:
        with msg.chunks, msg.form, bound_contextvars(request_id=msg.correlation_id):
            await respond(msg.reply, self._store(msg))

    async def _store(self, msg: StoreDocument) -> Document:
        settings = self.backends.settings
        ingest = Ingest(
            msg.declared_mime, settings.allowed_mime_types, settings.max_upload_file_size_bytes
        )
        key = storage_key(msg.document_id)
        blobs = self.backends.blobs
        writer: BlobWriter = await self.backends.in_blobs(blobs.open_writer, key)
        committed = False
        try:
            result = await self._ingest(msg.chunks, ingest, writer)
            try:
                form = await msg.form.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise UploadAbandoned("the request ended before the form was complete") from None
            if settings.enable_duplicate_hash_detection:
                existing = await self.backends.in_db(
                    self.backends.store.find_active_duplicate, form.entity_id, result.sha256_hash
                )
                if existing is not None:
                    raise DuplicateDocument(existing)
            version_id = await self.backends.in_blobs(writer.commit)
            committed = True
        finally:
            if not committed:
                with trio.CancelScope(shield=True):
                    await self.backends.in_blobs(writer.abort)

        doc = new_document(
            msg.document_id,
            form,
            result,
            mime_type=msg.declared_mime,
            storage_bucket=blobs.bucket,
            storage_version_id=version_id,
            at=utcnow(),
        )
        try:
            stored = await self.backends.in_db(
                lambda: self.backends.store.record_upload(
                    doc,
                    lambda d: upload_events(d, form.actor, msg.correlation_id),
                    unique_hash=settings.enable_duplicate_hash_detection,
                )
            )
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._roll_back_blob(msg.document_id, key, version_id, exc)
            raise
        self.committed()
        log.info(
            "document_stored",
            document_id=str(stored.id),
            entity_id=str(stored.entity_id),
            size_bytes=stored.size_bytes,
            sha256_hash=stored.sha256_hash,
            correlation_id=msg.correlation_id,
        )
        return stored

    async def _ingest(
        self, chunks: trio.MemoryReceiveChannel[bytes], ingest: Ingest, writer: BlobWriter
    ) -> IngestResult:
        """Hash, check and write the file in ~1 MiB batches, off the event loop."""

        def step(data: bytes) -> None:
            ingest.feed(data)
            writer.write(data)

        batch = bytearray()
        async for chunk in chunks:
            batch += chunk
            if len(batch) >= BATCH_BYTES:
                await self.backends.in_blobs(step, bytes(batch))
                batch.clear()
        if batch:
            await self.backends.in_blobs(step, bytes(batch))
        return ingest.finish()

    async def _roll_back_blob(
        self, document_id: UUID, key: str, version_id: str | None, error: BaseException
    ) -> None:
        """Delete the blob of an upload whose record failed, unless its row may exist."""
        if not isinstance(error, DuplicateDocument):  # a refused record wrote nothing
            try:
                present = await self.backends.in_db(
                    self.backends.store.documents_present, [document_id]
                )
            except Exception as check:
                log.warning(
                    "orphan_blob_left", storage_key=key,
                    reason="cannot tell whether the record was written", error=str(check),
                )
                return
            if document_id in present:
                log.error(
                    "upload_recorded_despite_error", document_id=str(document_id),
                    storage_key=key, error=repr(error),
                )
                return
        await self._forget_blob(key, version_id)

    async def _forget_blob(self, key: str, version_id: str | None) -> None:
        try:
            await self.backends.in_blobs(self.backends.blobs.delete, key, version_id)
        except Exception:
            log.exception("orphan_blob_left", storage_key=key)
