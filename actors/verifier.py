"""The verifier actor: re-hash a stored document and record what it found.

It reads the bytes a download would serve now, hashes them as a stream,
and compares the result with the recorded hash and with the ledger entry
the document cites (whose own chain link is checked too). Any difference,
or an object that cannot be read, is a mismatch: recorded, announced and
alerted, never a 5xx.

Backpressure: ``concurrency`` re-hashes at a time; the rest wait in the
mailbox, and HTTP callers wait in ``ask``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import attrs
import structlog
import trio
from structlog.contextvars import bound_contextvars

from actors.deps import Backends
from actors.runtime import Mailbox, answer, serve_mailbox
from vault.domain.errors import BlobUnreadable, VaultError
from vault.domain.events import verification_events
from vault.domain.ledger import entry_is_consistent
from vault.domain.models import Actor, Document, DocumentStatus, utcnow
from vault.ports import BlobStore, MetadataStore

log = structlog.get_logger("vault.verifier")


@attrs.frozen
class VerifyDocument:
    """Re-hash one stored document and record the outcome."""

    document_id: UUID
    actor: Actor
    correlation_id: str | None
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class Finding:
    """What one re-hash found, before it is recorded."""

    intact: bool
    calculated_hash: str | None
    reason: str | None


def rehash(blobs: BlobStore, key: str, version_id: str | None) -> str | None:
    """SHA-256 of the object as it reads now, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        for chunk in blobs.read(key, version_id):
            digest.update(chunk)
    except BlobUnreadable as exc:
        log.warning("blob_unreadable", storage_key=key, error=str(exc))
        return None
    return digest.hexdigest()


def ledger_agrees(store: MetadataStore, doc: Document) -> str | None:
    """None when the ledger backs the recorded hash, else what is wrong."""
    if doc.on_chain_reference is None:
        return "document has no ledger reference"
    entry = store.ledger_entry(doc.on_chain_reference)
    if entry is None:
        return "ledger entry missing"
    if entry.document_id != doc.id or entry.sha256_hash != doc.sha256_hash:
        return "ledger entry disagrees with the recorded hash"
    if not entry_is_consistent(entry, store.ledger_predecessor(entry)):
        return "ledger chain broken at this entry"
    return None


class VerifierActor:
    name = "verifier"

    def __init__(
        self,
        mailbox: Mailbox[VerifyDocument],
        backends: Backends,
        *,
        concurrency: int,
        committed: Callable[[], None],
        alerted: Callable[[], None],
    ) -> None:
        self.mailbox = mailbox
        self.backends = backends
        self.concurrency = concurrency
        self.committed = committed
        self.alerted = alerted

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own verification: ``concurrency`` re-hashes at a time."""
        await serve_mailbox(
            self.mailbox, self._handle, concurrency=self.concurrency, task_status=task_status
        )

    async def _handle(self, msg: VerifyDocument) -> None:
        with msg.reply, bound_contextvars(request_id=msg.correlation_id):
            try:
                doc = await self.verify(msg.document_id, msg.actor, msg.correlation_id)
            except VaultError as exc:
                answer(msg.reply, exc)
            else:
                answer(msg.reply, doc)

    async def verify(self, document_id: UUID, actor: Actor, correlation_id: str | None) -> Document:
        store = self.backends.store
        doc = await self.backends.in_db(store.get_document, document_id)
        finding = await self._examine(doc)
        at = utcnow()
        status = DocumentStatus.VERIFIED if finding.intact else DocumentStatus.MISMATCH
        updated = await self.backends.in_db(
            lambda: store.record_verification(
                doc.id,
                status=status,
                verified_by=actor.id,
                verified_at=at,
                events=lambda _: verification_events(
                    doc, finding.intact, finding.calculated_hash, actor, correlation_id, at
                ),
            )
        )
        self.committed()
        if finding.intact:
            log.info("document_verified", document_id=str(doc.id), correlation_id=correlation_id)
        else:
            self.alerted()
            log.warning(
                "document_mismatch",
                document_id=str(doc.id),
                expected_hash=doc.sha256_hash,
                calculated_hash=finding.calculated_hash,
                reason=finding.reason,
                correlation_id=correlation_id,
            )
        return updated

    async def _examine(self, doc: Document) -> Finding:
        # The bytes a download would serve now: the key's current version, not
        # the recorded one, so an overwrite in the bucket is caught.
        calculated = await self.backends.in_blobs(
            rehash, self.backends.blobs, doc.storage_key, None
        )
        ledger_problem = await self.backends.in_db(ledger_agrees, self.backends.store, doc)
        if calculated is None:
            return Finding(False, None, "stored object missing or unreadable")
        if calculated != doc.sha256_hash:
            return Finding(False, calculated, "content hash differs from the recorded hash")
        if ledger_problem is not None:
            return Finding(False, calculated, ledger_problem)
        return Finding(True, calculated, None)
