"""Ways to run the integrity sweep in the actor suite and to watch what it reads.

The sweep starts with the verifier and, when it finds nothing due, waits up
to a minute before looking again (new uploads are picked up then). So a
test that wants documents swept stores them first, in a vault whose sweep
is off (``seeded``), then starts a vault with the sweep on over the same
data folder (``running``).

``GatedBlobs`` wraps the blob store: it records every read (key, time,
the verifier mailbox's depth at that moment) and can hold reads of chosen
keys until the test lets them go, so a test can stop a verification half
way and see what the sweep does meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, cast
from uuid import UUID

import attrs
import trio
from trio.testing import wait_all_tasks_blocked

from actors.system import Sizing, Vault, run_vault
from actors.traffic import Traffic
from tests.actors.helpers import outbox, store_document, upload_form
from tests.polling import eventually
from vault.config import Settings
from vault.domain.models import Document
from vault.ports import BlobStore
from vault_http.serve import build_backends

GATE_SECONDS = 20.0
"""The longest a held read waits before it goes on anyway (so a failed test never hangs)."""
VERIFICATIONS = frozenset({"document.verified", "document.mismatch"})


@attrs.frozen
class Read:
    key: str
    at: float
    """``time.monotonic()`` when the read began."""
    depth: int
    """Messages waiting in the verifier's mailbox when the read began."""


class GatedBlobs:
    """A blob store that records reads and holds those of closed keys."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.reads: list[Read] = []
        self.gates: dict[str, threading.Event] = {}
        self.depth: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close_gate(self, key: str) -> None:
        self.gates[key] = threading.Event()

    def open_gate(self, key: str) -> None:
        self.gates[key].set()

    def open_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    def read(self, key: str, version_id: str | None) -> Iterator[bytes]:
        with self._lock:
            self.reads.append(Read(key, time.monotonic(), self.depth()))
        gate = self.gates.get(key)
        if gate is not None:
            gate.wait(GATE_SECONDS)
        return self.inner.read(key, version_id)

    def keys_read(self) -> list[str]:
        with self._lock:
            return [r.key for r in self.reads]


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    nursery: trio.Nursery,
    *,
    sizing: Sizing | None = None,
    gated: bool = False,
    held: Sequence[str] = (),
    traffic: Traffic | None = None,
) -> AsyncIterator[Vault]:
    """Every actor on ``settings``; with ``gated`` (or ``held``) a ``GatedBlobs`` around the
    blob store, whose reads of the ``held`` keys wait from the start until let go."""
    backends, _ = await trio.to_thread.run_sync(build_backends, settings)
    gated = gated or bool(held)
    if gated:
        wrapped = GatedBlobs(backends.blobs)
        for key in held:
            wrapped.close_gate(key)
        backends = attrs.evolve(backends, blobs=cast(BlobStore, wrapped))
    vault: Vault = await nursery.start(
        partial(run_vault, backends, sizing or Sizing(), traffic=traffic)
    )
    if gated:
        gates(vault).depth = vault.verifier.depth
    try:
        yield vault
    finally:
        if gated:
            gates(vault).open_all()
        await vault.stop(5)
        await trio.to_thread.run_sync(backends.store.close)


def gates(vault: Vault) -> GatedBlobs:
    blobs = vault.backends.blobs
    assert isinstance(blobs, GatedBlobs)
    return blobs


async def seeded(
    settings: Settings, nursery: trio.Nursery, sizes: Sequence[int],
    *, before_stop: Callable[[Vault, list[Document]], Any] | None = None,
) -> list[Document]:
    """Store one PDF of each size with the sweep off (in this order), then stop."""
    from tests.support import pdf_bytes

    off = attrs.evolve(settings, integrity_sweep_period_hours=0.0)
    async with running(off, nursery) as vault:
        docs = [await store_document(vault, pdf_bytes(size), upload_form()) for size in sizes]
        if before_stop is not None:
            await before_stop(vault, docs)
    return docs


async def until(
    check: Callable[[], Awaitable[object]], what: str, *, within: float = 10.0
) -> None:
    """``eventually`` for an async check (typed for one)."""
    await eventually(cast(Callable[[], Awaitable[Any]], check), what, within=within)


def sweep_status(vault: Vault) -> dict[str, Any]:
    """The verifier's health ``sweep`` figures, as /healthz shows them."""
    sweep: dict[str, Any] = vault.verifier.health.snapshot()["sweep"]
    return sweep


def coverage(vault: Vault) -> dict[str, Any] | None:
    found: dict[str, Any] | None = vault.verifier.health.snapshot().get("coverage")
    return found


async def document(vault: Vault, document_id: UUID) -> Document:
    return await vault.backends.in_db(vault.backends.store.get_document, document_id)


async def all_verified_since(vault: Vault, docs: Sequence[Document]) -> bool:
    """Every one of ``docs`` has a verification newer than the one it was stored with."""
    for doc in docs:
        now = await document(vault, doc.id)
        if now.hash_verified_at is None or (
            doc.hash_verified_at is not None and now.hash_verified_at <= doc.hash_verified_at
        ):
            return False
    return True


async def verification_audits(vault: Vault) -> list[dict[str, Any]]:
    """Bodies of every verification audit event, in the order they were committed."""
    return [
        row.body for row in await outbox(vault)
        if row.destination == "audit_events" and row.kind in VERIFICATIONS
    ]


async def idle(vault: Vault, *, blob_threads: int = 0) -> None:
    """Wait until every task is blocked and no worker thread is busy (but ``blob_threads``
    held blob reads)."""
    backends = vault.backends

    async def settled() -> bool:
        await wait_all_tasks_blocked(cushion=0.01)
        return (
            backends.db_limiter.borrowed_tokens == 0
            and backends.sink_limiter.borrowed_tokens == 0
            and backends.blob_limiter.borrowed_tokens == blob_threads
        )

    await until(settled, "the vault to sit idle")
