"""Anchoring: date checkpoints with a Time-Stamp Authority and anchor them on a chain.

Part of the ledger actor, one ``Anchoring`` a kind (``rfc3161``, ``evm``).
When a checkpoint is signed, or ``interval`` after the last anchor, a job
is written for the latest signed checkpoint if it is due (``anchor_due``:
at most one a kind every interval, and only when the tree grew). Jobs are
rows (``ledger_anchors``), claimed with a lease as the outbox's are, so a
failure, a restart or a second process never loses or doubles one.

A job moves by steps, each a blocking call in a worker thread:

* rfc3161: the TSA's token over SHA-256 of the checkpoint's note; done.
* evm: ``pending`` → a transaction is sent (``sent``, its hash, nonce and
  raw bytes kept) → followed until it has its confirmations (done, with
  block number and hash); a transaction the chain dropped (a reorg before
  its confirmations) makes the job ``pending`` again, and a new one is sent.

A failed step (authority down, a refused answer, a nonce race lost too
often) counts an attempt and is tried again after a backoff (1 s doubling
to 5 min); the job keeps its place.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import attrs
import structlog
import trio

from actors.deps import Backends
from vault.adapters.evm import AnchorReverted, EvmClient
from vault.adapters.timestamps import InvalidTimestamp, TimestampClient
from vault.domain.anchor import Confirmed, Dropped, checkpoint_digest
from vault.domain.errors import DependencyUnavailable
from vault.domain.models import iso_response, utcnow
from vault.domain.publication import (
    AnchorJob,
    AnchorKind,
    AnchorState,
    StoredAnchor,
    anchor_due,
    backoff,
)

log = structlog.get_logger("vault.ledger")

LEASE_SECONDS = 120.0
"""Longer than any one step (each call has a 10 s timeout)."""
IDLE_POLL_SECONDS = 30.0
"""How often an idle kind looks for a job whose lease ran out."""


@attrs.frozen
class Progress:
    """The job moved (or waits) and should be looked at again after ``retry_in`` seconds."""

    job: AnchorJob
    retry_in: float


Step = Callable[[AnchorJob, str], "StoredAnchor | Progress"]
"""One blocking step of a job, given the checkpoint's note."""


def timestamp_step(client: TimestampClient) -> Step:
    def step(job: AnchorJob, note: str) -> StoredAnchor | Progress:
        token = client.timestamp(checkpoint_digest(note))
        return StoredAnchor(
            kind=AnchorKind.RFC3161, size=job.size, note=note,
            anchored_at=token.gen_time, token=token.der,
        )
    return step


def chain_step(client: EvmClient, confirmations: int, poll: float) -> Step:
    def step(job: AnchorJob, note: str) -> StoredAnchor | Progress:
        if job.state is AnchorState.PENDING or job.tx_hash is None:
            sent = client.send_anchor(checkpoint_digest(note))
            moved = attrs.evolve(
                job, state=AnchorState.SENT, tx_hash=sent.tx_hash, nonce=sent.nonce,
                raw_tx=sent.raw_tx, last_error=None,
            )
            return Progress(moved, 0.0 if confirmations <= 1 else poll)
        followed = client.follow(job.tx_hash, confirmations)
        if isinstance(followed, Confirmed):
            found = followed.anchor
            return StoredAnchor(
                kind=AnchorKind.EVM, size=job.size, note=note, anchored_at=utcnow(),
                chain_id=found.chain_id, tx_hash=found.tx_hash,
                block_number=found.block_number, block_hash=found.block_hash,
            )
        if isinstance(followed, Dropped):
            log.warning("anchor_dropped", size=job.size, tx_hash=job.tx_hash)
            dropped = attrs.evolve(
                job, state=AnchorState.PENDING, tx_hash=None, nonce=None, raw_tx=None,
                last_error=f"transaction {job.tx_hash} was dropped by the chain; sending again",
            )
            return Progress(dropped, 0.0)
        return Progress(job, poll)
    return step


@attrs.define
class AnchorStatus:
    kind: AnchorKind
    anchors: int = 0
    failures: int = 0
    last_size: int = 0
    last_anchored_at: datetime | None = None
    last_error: str | None = None

    def snapshot(self) -> dict[str, object]:
        return {
            "anchors": self.anchors,
            "failures": self.failures,
            "last_size": self.last_size,
            "last_anchored_at": None if self.last_anchored_at is None
            else iso_response(self.last_anchored_at),
            "last_error": self.last_error,
        }


class Anchoring:
    """Jobs of one kind: scheduled when due, worked one at a time."""

    def __init__(
        self, backends: Backends, kind: AnchorKind, step: Step, *, interval: float,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.backends = backends
        self.kind = kind
        self.step = step
        self.interval = interval
        self.status = AnchorStatus(kind)
        self._close = close
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(1)

    def signed(self) -> None:
        """A checkpoint was signed: see whether one is due."""
        self._wake.set()

    async def run(self) -> None:
        store = self.backends.store
        newest = await self.backends.in_db(store.newest_anchor, self.kind)
        if newest is not None:
            self.status.last_size = newest.size
            self.status.last_anchored_at = newest.anchored_at
        failures = 0
        try:
            while True:
                self._wake = trio.Event()
                try:
                    wait = await self._schedule()
                    wait = min(wait, await self._work())
                    failures = 0
                except DependencyUnavailable as exc:  # the store, between steps
                    failures += 1
                    self.status.failures += 1
                    self.status.last_error = str(exc)
                    wait = backoff(failures)
                with trio.move_on_after(wait):
                    await self._wake.wait()
        finally:
            self._close()

    async def _schedule(self) -> float:
        """Write a job if one is due; seconds until the next could be."""
        store = self.backends.store
        last = await self.backends.in_db(store.last_anchor, self.kind)
        latest = await self.backends.in_db(store.latest_checkpoint)
        now = utcnow()
        interval = timedelta(seconds=self.interval)
        if latest is not None and anchor_due(last, latest.size, now, interval):
            if await self.backends.in_db(store.schedule_anchor, self.kind, latest.size, now):
                log.info("anchor_scheduled", kind=self.kind.value, tree_size=latest.size)
            return self.interval
        if last is None:
            return self.interval
        remaining = (last.created_at + interval - now).total_seconds()
        # Past due but the tree has not grown: the next checkpoint signed wakes
        # this loop (``signed``), so wait the interval rather than spin.
        return remaining if remaining > 0 else self.interval

    async def _work(self) -> float:
        """Work every job that is ready; seconds until one may be ready again."""
        store = self.backends.store
        while True:
            job = await self.backends.in_db(store.claim_anchor, self.kind, utcnow(), LEASE_SECONDS)
            if job is None:
                # A job leased by a retry time or by a process that stopped
                # comes back when its lease runs out: look again by then.
                return min(self.interval, IDLE_POLL_SECONDS)
            checkpoint = await self.backends.in_db(store.checkpoint_at, job.size)
            if checkpoint is None:  # unreachable: jobs are written for signed checkpoints
                raise LookupError(f"no checkpoint of size {job.size} to anchor")
            retry = await self._step(job, checkpoint.note)
            if retry > 0:
                return retry

    async def _step(self, job: AnchorJob, note: str) -> float:
        store = self.backends.store
        try:
            done = await trio.to_thread.run_sync(
                self.step, job, note, limiter=self._limiter, abandon_on_cancel=True,
            )
        except (DependencyUnavailable, InvalidTimestamp, AnchorReverted) as exc:
            failed = attrs.evolve(job, attempts=job.attempts + 1, last_error=str(exc))
            if isinstance(exc, AnchorReverted):
                failed = attrs.evolve(failed, state=AnchorState.PENDING, tx_hash=None,
                                      nonce=None, raw_tx=None)
            wait = backoff(failed.attempts)
            await self.backends.in_db(store.save_anchor, failed, _after(wait))
            self.status.failures += 1
            self.status.last_error = str(exc)
            log.warning("anchor_failed", kind=self.kind.value, tree_size=job.size,
                        attempts=failed.attempts, error=str(exc))
            return wait
        if isinstance(done, Progress):
            retry = _after(done.retry_in) if done.retry_in > 0 else None
            await self.backends.in_db(store.save_anchor, done.job, retry)
            return done.retry_in
        await self.backends.in_db(store.finish_anchor, done)
        self.status.anchors += 1
        self.status.last_size = max(self.status.last_size, done.size)
        self.status.last_anchored_at = done.anchored_at
        self.status.last_error = None
        log.info("checkpoint_anchored", kind=self.kind.value, tree_size=done.size,
                 tx_hash=done.tx_hash)
        return 0.0


def _after(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
