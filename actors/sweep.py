"""The integrity sweep: the verifier's own timer re-verifies every document, paced.

Every document, archived ones included, is re-verified at least once a
``period`` (``INTEGRITY_SWEEP_PERIOD_HOURS``): the sweep claims the next
document due (``claim_sweep``: never verified first, then the oldest
``hash_verified_at``; a lease, so two processes on one database never
re-hash one document at once) and verifies it exactly as an HTTP caller
would, as the system actor with ``details.reason: "scheduled_sweep"``:
status, events, the ledger's leaf, an alert on a mismatch; it never
un-archives. Its position is the documents' ``hash_verified_at``, so a
restart continues where it stopped.

It reads at most ``bytes_per_second`` on average (after a document of n
bytes it waits what n bytes cost at that pace), one document at a time,
and only while no HTTP verification waits in the verifier's mailbox: client
requests go first. Before each document it also waits for a lull in client
traffic (no ``/api/`` request in flight), at most ``LULL_SECONDS``: on a
busy service it slips its documents between requests, and under traffic
that never pauses it still takes one document per ``LULL_SECONDS``.

When nothing is due it records the pass as completed and waits for the
next document to fall due (at most ``IDLE_POLL_SECONDS``, so new uploads
are picked up).

Coverage (``integrity_coverage``) is read every ``COVERAGE_SECONDS`` and
after each pass, for the verifier's health and /metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import attrs
import structlog
import trio

from actors.deps import Backends
from actors.runtime import ActorHealth
from actors.traffic import Traffic
from vault.domain.errors import DependencyUnavailable, DocumentDisposed, DocumentNotFound
from vault.domain.integrity import SWEEP_LEAD, SWEEP_REASON, Coverage, Pace, sweep_cutoff
from vault.domain.models import Actor, Document, DocumentStatus, iso_response, utcnow
from vault.domain.publication import backoff

log = structlog.get_logger("vault.verifier")

LEASE_SECONDS = 600.0
"""Longer than one document's verification takes (the largest at the slowest pace)."""
IDLE_POLL_SECONDS = 60.0
COVERAGE_SECONDS = 30.0
QUIET_POLL_SECONDS = 0.05
"""How often the sweep looks whether HTTP verifications still wait."""
LULL_SECONDS = 1.0
"""The longest the sweep waits for no client request to be in flight."""


class Verify(Protocol):
    def __call__(
        self, document_id: UUID, actor: Actor, correlation_id: str | None, *, reason: str | None
    ) -> Awaitable[Document]: ...


@attrs.define
class SweepStatus:
    enabled: bool
    bytes_per_second: float
    documents: int = 0
    bytes_read: int = 0
    mismatches: int = 0
    failures: int = 0
    lulls_missed: int = 0
    """Documents taken while client requests were in flight (no lull came in time)."""
    last_pass_completed_at: datetime | None = None
    last_error: str | None = None
    coverage: Coverage | None = None

    def snapshot(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "bytes_per_second": self.bytes_per_second,
            "documents": self.documents,
            "bytes_read": self.bytes_read,
            "mismatches": self.mismatches,
            "failures": self.failures,
            "lulls_missed": self.lulls_missed,
            "last_pass_completed_at": iso_response(self.last_pass_completed_at),
            "last_error": self.last_error,
        }


class Sweep:
    def __init__(
        self,
        backends: Backends,
        verify: Verify,
        health: ActorHealth,
        *,
        period: timedelta,
        bytes_per_second: float,
        clock: Callable[[], datetime] = utcnow,
        idle_poll: float = IDLE_POLL_SECONDS,
        coverage_every: float = COVERAGE_SECONDS,
        traffic: Traffic | None = None,
        lull_within: float = LULL_SECONDS,
    ) -> None:
        self.backends = backends
        self.verify = verify
        self.health = health
        self.period = period
        self.pace = Pace(bytes_per_second)
        self.clock = clock
        self.idle_poll = idle_poll
        self.coverage_every = coverage_every
        self.traffic = traffic or Traffic()
        self.lull_within = lull_within
        self.status = SweepStatus(enabled=period > timedelta(0), bytes_per_second=bytes_per_second)

    async def run(self) -> None:
        store = self.backends.store
        self.status.last_pass_completed_at = await self.backends.in_db(store.last_sweep_pass)
        await self.refresh_coverage()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._coverage_loop)
            if self.status.enabled:
                await self._sweep()

    async def refresh_coverage(self) -> Coverage:
        period = self.period if self.period > timedelta(0) else timedelta(hours=168)
        coverage = await self.backends.in_db(
            self.backends.store.integrity_coverage, self.clock(), period
        )
        self.status.coverage = coverage
        return coverage

    async def _coverage_loop(self) -> None:
        while True:
            await trio.sleep(self.coverage_every)
            try:
                await self.refresh_coverage()
            except DependencyUnavailable as exc:
                self.status.last_error = str(exc)

    async def _sweep(self) -> None:
        failures = 0
        swept = 0
        while True:
            await self._quiet()
            try:
                claimed = await self._claim()
                if claimed is None:
                    if swept or self.status.last_pass_completed_at is None:
                        await self._pass_completed()
                    swept = 0
                    await trio.sleep(await self._idle_wait())
                    continue
                took, read = await self._one(claimed)
                failures = 0
            except Exception as exc:
                # The store or blob store down, the ledger busy: the document's
                # claim was handed back, and the next try is after a backoff.
                failures += 1
                self.status.failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sweep_failed", error=str(exc), error_type=type(exc).__name__)
                await trio.sleep(backoff(failures))
                continue
            swept += 1
            await trio.sleep(self.pace.delay(read, took))

    async def _quiet(self) -> None:
        """Wait while HTTP verifications wait (they go first), then for a lull in traffic."""
        while self.health.depth() > 0:  # noqa: ASYNC110 (a mailbox has no "emptied" event)
            await trio.sleep(QUIET_POLL_SECONDS)
        if not await self.traffic.lull(self.lull_within):
            self.status.lulls_missed += 1

    async def _claim(self) -> UUID | None:
        now = self.clock()
        store = self.backends.store
        # Shielded, so a shutdown never loses a claim it made (which would
        # keep the document's lease for LEASE_SECONDS after a restart).
        with trio.CancelScope(shield=True):
            taken = await self.backends.in_db(
                store.claim_sweep, now, sweep_cutoff(now, self.period), LEASE_SECONDS, 1
            )
        if not taken:
            return None
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self.backends.in_db(store.release_sweep, taken[0], self.clock())
            raise
        return taken[0]

    async def _one(self, document_id: UUID) -> tuple[float, int]:
        started = trio.current_time()
        try:
            doc = await self.verify(document_id, Actor.system(), None, reason=SWEEP_REASON)
        except (DocumentNotFound, DocumentDisposed):
            return 0.0, 0
        finally:
            # Verified (its hash_verified_at keeps it from being due again),
            # gone, or failed: the lease has done its work either way.
            with trio.CancelScope(shield=True):
                await self.backends.in_db(
                    self.backends.store.release_sweep, document_id, self.clock()
                )
        self.status.documents += 1
        self.status.bytes_read += doc.size_bytes
        if doc.status is DocumentStatus.MISMATCH:
            self.status.mismatches += 1
        return trio.current_time() - started, doc.size_bytes

    async def _pass_completed(self) -> None:
        at = self.clock()
        await self.backends.in_db(self.backends.store.sweep_pass_completed, at)
        self.status.last_pass_completed_at = at
        await self.refresh_coverage()
        log.info("sweep_pass_completed", at=iso_response(at))

    async def _idle_wait(self) -> float:
        """Seconds until the oldest verification falls due, at most ``idle_poll``."""
        coverage = self.status.coverage
        if coverage is None or coverage.oldest_verification_at is None:
            return self.idle_poll
        due_at = coverage.oldest_verification_at + self.period * (1 - SWEEP_LEAD)
        due_in = (due_at - self.clock()).total_seconds()
        return min(self.idle_poll, max(QUIET_POLL_SECONDS, due_in))
