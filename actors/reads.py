"""Reads that change no document: straight to the adapters, through their limiters.

Listing, fetching one document, issuing a download URL and streaming a
signed blob change no document, so they need no owning actor and its
mailbox: each goes to the store or the blob store in a worker thread,
bounded by that backend's limiter (``Backends.in_db`` / ``in_blobs``), the
same limiters the actors use. Issuing a URL appends only its audit event to
the outbox and nudges the audit publisher.

Readiness probes run here too: each in an abandonable thread, given up
after ``READY_PROBE_SECONDS`` so a hung dependency cannot hang ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from uuid import UUID

import attrs
import trio

from actors.deps import Backends
from actors.records import object_lock_problem
from vault.domain.errors import VaultError
from vault.domain.events import download_issued_event
from vault.domain.models import Actor, Document, EntityType, utcnow
from vault.domain.retention import RetentionPolicy
from vault.ports import PageCursor

READY_PROBE_SECONDS = 5.0


@attrs.frozen
class DownloadUrl:
    url: str
    expires_at: datetime
    """Whole seconds, as the URL's own expiry."""


class Reads:
    """The read side of the vault, for the HTTP layer."""

    def __init__(self, backends: Backends, *, committed: Callable[[], None]) -> None:
        self.backends = backends
        self.committed = committed

    async def document(self, document_id: UUID) -> Document:
        """The document, or ``DocumentNotFound``."""
        return await self.backends.in_db(self.backends.store.get_document, document_id)

    async def documents(
        self,
        entity_id: UUID,
        *,
        entity_type: EntityType | None,
        include_archived: bool,
        limit: int,
        after: PageCursor | None,
    ) -> list[Document]:
        """Up to ``limit`` documents of the entity, newest first."""
        store = self.backends.store
        return await self.backends.in_db(
            lambda: store.list_documents(
                entity_id,
                entity_type=entity_type,
                include_archived=include_archived,
                limit=limit,
                after=after,
            )
        )

    async def download_url(
        self, doc: Document, actor: Actor, *, expires_in: int, correlation_id: str | None
    ) -> DownloadUrl:
        """A signed URL for the document's current bytes, its audit event written.

        The key's current version: what verification checks is what a
        download serves.
        """
        blobs = self.backends.blobs
        url = await self.backends.in_blobs(
            lambda: blobs.presign(
                doc.storage_key,
                None,
                filename=doc.filename,
                mime_type=doc.mime_type,
                expires_in=expires_in,
                document_id=doc.id,
            )
        )
        issued_at = utcnow()
        expires_at = datetime.fromtimestamp(int(time.time()) + expires_in, UTC)
        event = download_issued_event(doc, actor, expires_in, correlation_id, issued_at)
        await self.backends.in_db(self.backends.store.append_events, [event])
        self.committed()
        return DownloadUrl(url=url, expires_at=expires_at)

    async def blob(self, key: str, version_id: str | None) -> AsyncIterator[bytes]:
        """The object's plaintext as a stream; its first chunk is read before this returns.

        So an object that is missing or fails its first check raises here
        (``BlobUnreadable``), before anything is answered. A failure later
        raises from the stream, after the headers have gone.
        """
        backends = self.backends
        chunks = await backends.in_blobs(backends.blobs.read, key, version_id)
        first = await backends.in_blobs(next, chunks, None)

        async def stream() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                while True:
                    chunk = await backends.in_blobs(next, chunks, None)
                    if chunk is None:
                        return
                    yield chunk
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    await backends.in_blobs(close)

        return stream()

    async def readiness(self) -> dict[str, str]:
        """``"ok"`` or why not, for the database and the blob store."""
        backends = self.backends
        return {
            "database": await _probe(backends.store.ping, backends.db_limiter),
            "blob_store": await _probe(backends.blobs.ping, backends.blob_limiter),
            "object_lock": await self._object_lock(),
            "versioning": await self._versioning(),
        }

    async def _versioning(self) -> str:
        """``"ok"`` while the object store keeps every version: with versioning suspended a
        write could take a locked object's place, and a disposition could miss versions."""
        blobs = self.backends.blobs
        enabled: list[bool] = []
        said = await _probe(lambda: enabled.append(blobs.versioning_enabled()),
                            self.backends.blob_limiter)
        if said != "ok" or enabled[0]:
            return said
        return f"versioning is not enabled on the object store {blobs.bucket}"

    async def _object_lock(self) -> str:
        """``"ok"``, or why the object store cannot enforce the policies that exist. The
        policies are read (in the database's thread) only when the store has no lock."""
        backends = self.backends
        enabled: list[bool] = []
        said = await _probe(lambda: enabled.append(backends.blobs.object_lock_enabled()),
                            backends.blob_limiter)
        if said != "ok" or enabled[0]:
            return said
        policies: list[RetentionPolicy] = []
        said = await _probe(lambda: policies.extend(backends.store.retention_policies()),
                            backends.db_limiter)
        return said if said != "ok" else object_lock_problem(False, policies) or "ok"


async def _probe(check: Callable[[], None], limiter: trio.CapacityLimiter) -> str:
    """"ok", or why not; a probe that hangs is abandoned after READY_PROBE_SECONDS."""
    try:
        with trio.fail_after(READY_PROBE_SECONDS):
            await trio.to_thread.run_sync(check, limiter=limiter, abandon_on_cancel=True)
    except VaultError as exc:
        return exc.detail
    except trio.TooSlowError:
        return f"no answer within {READY_PROBE_SECONDS:g} s"
    return "ok"
