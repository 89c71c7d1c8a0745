"""The verifier actor: re-hash a stored document and record what it found.

It reads the bytes a download would serve now and hashes them as a
stream, reads what the log holds on the document's registration
(``log_reads.evidence_for``: the ``registered`` leaf, the latest signed
checkpoint, the leaf's proof from the tiles) and lets
``vault.domain.lifecycle.conclude`` judge. A document uploaded a moment ago
may not be under a checkpoint yet: the verifier then asks the ledger actor
to integrate and sign at once (``Publish``) and reads again. A mismatch is
recorded with its leaf, announced and alerted, never a 5xx.

Beside the mailbox runs the integrity sweep (``actors.sweep``), which
re-verifies every document once a period through the same ``verify``, as
the system actor, whenever no HTTP verification waits.

Backpressure: ``concurrency`` re-hashes at a time; the rest wait in the
mailbox, and HTTP callers wait in ``ask``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from uuid import UUID

import attrs
import structlog
import trio
from structlog.contextvars import bound_contextvars

from actors.deps import Backends
from actors.log_reads import evidence_for
from actors.runtime import Mailbox, Reply, respond, serve_mailbox
from actors.sweep import LULL_SECONDS, Sweep
from actors.traffic import Traffic
from vault.domain.errors import BlobUnreadable, DocumentDisposed
from vault.domain.events import verification_events
from vault.domain.lifecycle import Verdict, conclude
from vault.domain.models import Actor, Document, utcnow
from vault.domain.note import Verifier
from vault.ports import BlobStore

log = structlog.get_logger("vault.verifier")


@attrs.frozen
class VerifyDocument:
    """Re-hash one stored document and record the outcome."""

    document_id: UUID
    actor: Actor
    correlation_id: str | None
    reply: Reply[Document]


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
        publish: Callable[[], Awaitable[object]],
        verifier: Verifier,
        traffic: Traffic | None = None,
        sweep_lull: float = LULL_SECONDS,
        sweep_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.mailbox = mailbox
        self.backends = backends
        self.publish = publish
        self.log_verifier = verifier
        self.concurrency = concurrency
        self.committed = committed
        self.alerted = alerted
        settings = backends.settings
        self.sweep = Sweep(
            backends, self.verify, mailbox.health,
            period=timedelta(hours=settings.integrity_sweep_period_hours),
            bytes_per_second=settings.integrity_sweep_max_mb_per_second * 1_000_000,
            clock=sweep_clock, traffic=traffic or Traffic(), lull_within=sweep_lull,
        )
        mailbox.health.live = self._live

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own verification: ``concurrency`` re-hashes at a time, and the sweep beside them."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sweep.run)
            await serve_mailbox(
                self.mailbox, self._handle, concurrency=self.concurrency, task_status=task_status
            )
            # The mailbox closed (shutdown): the sweep stops with it.
            nursery.cancel_scope.cancel()

    def _live(self) -> dict[str, object]:
        coverage = self.sweep.status.coverage
        out: dict[str, object] = {"sweep": self.sweep.status.snapshot()}
        if coverage is not None:
            out["coverage"] = {
                "documents": coverage.documents,
                "current": coverage.verified_within_period,
                "overdue": coverage.overdue,
                "never": coverage.never_verified,
                "mismatch": coverage.mismatched,
                "oldest_verification_age_seconds": coverage.oldest_age_seconds,
            }
        return out

    async def _handle(self, msg: VerifyDocument) -> None:
        with bound_contextvars(request_id=msg.correlation_id):
            await respond(msg.reply, self.verify(msg.document_id, msg.actor, msg.correlation_id))

    async def verify(
        self, document_id: UUID, actor: Actor, correlation_id: str | None, *,
        reason: str | None = None,
    ) -> Document:
        store = self.backends.store
        doc = await self.backends.in_db(store.get_document, document_id)
        if doc.is_disposed:
            raise DocumentDisposed(doc.id)  # nothing left to read: not a mismatch
        verdict = await self._examine(doc)
        at = utcnow()
        updated = await self.backends.in_db(
            lambda: store.record_verification(
                doc.id,
                status=verdict.status,
                calculated_hash=verdict.calculated_hash,
                verified_by=actor.id,
                verified_at=at,
                events=lambda _: verification_events(
                    doc, verdict.intact, verdict.calculated_hash, actor, correlation_id, at,
                    reason,
                ),
                freeze_on_mismatch=self.backends.settings.entity_freeze_on_mismatch,
            )
        )
        self.committed()
        if verdict.intact:
            log.info("document_verified", document_id=str(doc.id), correlation_id=correlation_id)
        else:
            self.alerted()
            log.warning(
                "document_mismatch",
                document_id=str(doc.id),
                expected_hash=doc.sha256_hash,
                calculated_hash=verdict.calculated_hash,
                reason=verdict.reason,
                correlation_id=correlation_id,
            )
        return updated

    async def _examine(self, doc: Document) -> Verdict:
        # The bytes a download would serve now: the key's current version, not
        # the recorded one, so an overwrite in the bucket is caught.
        calculated = await self.backends.in_blobs(
            rehash, self.backends.blobs, doc.storage_key, None
        )
        store = self.backends.store
        evidence = await self.backends.in_db(evidence_for, store, doc)
        if evidence.leaf is not None and not evidence.under_checkpoint:
            await self.publish()
            evidence = await self.backends.in_db(evidence_for, store, doc)
        return conclude(doc, calculated, evidence, self.log_verifier)
