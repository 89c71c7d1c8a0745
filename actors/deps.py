"""What the actors share: the adapters and the limiters that bound their threads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ParamSpec, TypeVar

import attrs
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.adapters.blobs.log_mirror import S3LogMirror
from vault.config import Settings
from vault.domain.events import Destination
from vault.domain.models import utcnow
from vault.ports import BlobStore, EventSink, MetadataStore

P = ParamSpec("P")
T = TypeVar("T")


@attrs.frozen
class Backends:
    """The adapters, each reached only through its own limiter.

    Blocking calls never run on the event loop: ``in_db`` and ``in_blobs``
    move them to a worker thread, at most ``limit`` at a time per backend.
    """

    settings: Settings
    store: MetadataStore
    blobs: BlobStore
    sinks: dict[Destination, EventSink]
    ledger_key: Ed25519PrivateKey = attrs.field(factory=Ed25519PrivateKey.generate, repr=False)
    """Signs the ledger's checkpoints (``vault.wiring.ledger_signing_key`` in service)."""
    log_mirror: S3LogMirror | None = None
    """Where the log's static copy goes (``vault.wiring.log_mirror``), if anywhere."""
    clock: Callable[[], datetime] = utcnow
    """The time records decisions are taken at (retention over, disposable); tests move it."""
    db_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(8))
    blob_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(8))
    sink_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(4))

    async def in_db(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.db_limiter)

    async def in_blobs(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.blob_limiter)

    async def in_sink(self, fn: Callable[..., T], *args: object) -> T:
        """Abandoned on cancellation: a send cut off at shutdown leaves its rows
        leased, and they are sent again later (consumers dedupe on event_id)."""
        return await trio.to_thread.run_sync(
            fn, *args, limiter=self.sink_limiter, abandon_on_cancel=True
        )
