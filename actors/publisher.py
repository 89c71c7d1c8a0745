"""Publisher actors: drain the outbox to its sinks, at least once.

Two run this loop: ``audit_publisher`` (document events and audit events)
and ``alerter`` (integrity alerts and incident notifications). Each wakes
on a nudge, sent right after a commit that wrote events, and on a timer,
so a missed nudge only delays.

Delivery: rows are leased (``claim_outbox``) so two publishers, in one
process or in two replicas, never send one row at once; they are handed to
the destination's sink ``send_chunk`` at a time and then marked delivered.
Rows are handed over only during the first ``send_window`` of the lease:
once that much of it has gone by, the rest are left for the lease to run
out and are claimed again. A crash between sending and marking means the
row is sent again later with the same ``event_id``: consumers dedupe.

Errors, per destination:

- a row the sink rejects for good is parked with its error; it is no
  failure of the destination, and the rows behind it go on;
- a row the sink fails on its own (the service answered, but not for this
  entry) is held back with capped, jittered exponential backoff of its own;
- a sink that cannot be reached fails the rows claimed for it (those not
  yet sent included): they stay due, and the destination is left alone
  (nudges or not) for a backoff that grows with each consecutive failed
  drain, while the other destination carries on. A row is retried no
  sooner than its own backoff and its destination's allow, and at the
  latest on the sweep after both have passed.

Health: ``extra["backlog"]`` holds, per destination, the rows ``pending``
and ``parked`` and the age of the oldest pending one, as of the last drain,
and the rows ``delivered``, ``failed`` and ``pruned`` since the process
started. The metrics collector reads it at scrape time.

Retention: every ``prune_interval`` a publisher removes its destinations'
rows delivered more than ``OUTBOX_RETENTION_HOURS`` ago, ``prune_batch``
rows a statement and at most ``prune_batches`` statements a destination
per pass, so a large backlog of old rows is worked off in short steps.

Shutdown: closing the mailbox makes the loop drain once more, ignoring the
destinations' backoff, and return. Cancellation (the end of the grace
period) abandons a send still waiting on its sink: those rows stay leased,
undelivered, and are sent again later.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs
import structlog
import trio

from actors.deps import Backends
from actors.runtime import Mailbox
from vault.domain.errors import DependencyUnavailable
from vault.domain.events import Destination, OutboxRow
from vault.domain.models import utcnow
from vault.ports import Delivery, OutboxStats

log = structlog.get_logger("vault.publisher")


@attrs.frozen
class Nudge:
    """Events were committed: look at the outbox now."""


@attrs.frozen
class PublishPolicy:
    batch_size: int = 50
    send_chunk: int = 10
    sweep_interval: float = 5.0
    lease_seconds: float = 60.0
    send_window: float = 0.5
    """The share of a lease during which claimed rows are still handed to a sink."""
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    prune_interval: float = 60.0
    """Seconds between two passes that remove rows delivered longer ago than the retention."""
    prune_batch: int = 1000
    """Rows one prune statement removes at most: a short statement, whatever the backlog."""
    prune_batches: int = 20
    """Statements one pass runs at most per destination; the rest wait for the next pass."""

    def retry_delay(self, attempts: int) -> float:
        """Capped exponential backoff with full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


@attrs.define
class _Outcome:
    """What one destination's share of a claimed batch came to."""

    delivered: int = 0
    failed: int = 0
    stalled: bool = False
    """The sink failed (unreachable, or some rows not taken): back off."""
    error: str | None = None


class PublisherActor:
    def __init__(
        self,
        name: str,
        mailbox: Mailbox[Nudge],
        backends: Backends,
        destinations: Sequence[Destination],
        policy: PublishPolicy,
    ) -> None:
        self.name = name
        self.mailbox = mailbox
        self.backends = backends
        self.destinations = tuple(destinations)
        self.policy = policy
        self._failures: Counter[Destination] = Counter()
        self._resume_at: dict[Destination, float] = {}
        self._delivered: Counter[Destination] = Counter()
        self._failed: Counter[Destination] = Counter()
        self._pruned: Counter[Destination] = Counter()
        self._next_prune = -float("inf")

    def nudge(self) -> None:
        """Ask for a drain soon; nudges coalesce while one is pending."""
        self.mailbox.tell_nowait(Nudge())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain on every nudge, every ``sweep_interval`` and when a backoff ends;
        drain once more at close."""
        task_status.started()
        await self.drain()
        # The first prune goes with the first drain: left to the loop, its
        # due time (now) woke the loop at once for a second, unasked drain.
        await self.prune()
        while True:
            closed = False
            with trio.move_on_at(self._next_wake()):
                try:
                    await self.mailbox.receive_channel.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    closed = True
                else:
                    self._swallow_pending_nudges()
            # Outside the timer's scope: a drain is never cut short by the next wake.
            if closed:
                await self.drain(final=True)
                return
            await self.drain()
            if trio.current_time() >= self._next_prune:
                await self.prune()

    def _next_wake(self) -> float:
        """The next sweep, or the end of a destination's backoff if that comes first."""
        now = trio.current_time()
        ends = [at for at in self._resume_at.values() if at > now]
        return min([now + self.policy.sweep_interval, self._next_prune, *ends])

    def _backing_off(self, destination: Destination) -> bool:
        return self._resume_at.get(destination, -float("inf")) > trio.current_time()

    def _swallow_pending_nudges(self) -> None:
        while True:
            try:
                self.mailbox.receive_channel.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    async def drain(self, *, final: bool = False) -> None:
        """Send every due row, batch by batch, until none is left.

        A destination whose sink fails is not claimed again in this drain,
        nor in later ones until its backoff ends; ``final`` ignores backoff.
        """
        health = self.mailbox.health
        stalled: set[Destination] = set()
        while True:
            wanted = [
                d for d in self.destinations
                if d not in stalled and (final or not self._backing_off(d))
            ]
            if not wanted:
                break
            send_by = trio.current_time() + self.policy.lease_seconds * self.policy.send_window
            rows = await self.backends.in_db(
                self.backends.store.claim_outbox,
                wanted,
                self.policy.batch_size,
                utcnow(),
                self.policy.lease_seconds,
            )
            if not rows:
                break
            health.in_flight = len(rows)
            try:
                stalled |= await self._send(rows, send_by)
            finally:
                health.in_flight = 0
                health.touch()
        await self._refresh_backlog()

    async def _send(self, rows: list[OutboxRow], send_by: float) -> set[Destination]:
        """Send one claimed batch; the destinations that failed."""
        by_destination: dict[Destination, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_destination[row.event.destination].append(row)
        stalled: set[Destination] = set()
        for destination, batch in by_destination.items():
            outcome = await self._send_to(destination, batch, send_by)
            self._count(destination, outcome)
            if outcome.stalled:
                stalled.add(destination)
        return stalled

    async def _send_to(
        self, destination: Destination, batch: list[OutboxRow], send_by: float
    ) -> _Outcome:
        sink = self.backends.sinks[destination]
        outcome = _Outcome()
        chunk_size = max(1, self.policy.send_chunk)
        for start in range(0, len(batch), chunk_size):
            if trio.current_time() > send_by:
                # Too close to the end of the lease: another publisher may
                # claim these rows soon, so this one must not send them.
                log.warning("outbox_lease_running_out", sink=sink.name,
                            left_unsent=len(batch) - start)
                outcome.stalled = True
                break
            chunk = batch[start:start + chunk_size]
            try:
                deliveries = await self.backends.in_sink(sink.send, chunk)
            except DependencyUnavailable as exc:
                # Unreachable: nothing later in this batch would go either.
                # The rows stay due; the destination's backoff paces retries.
                unsent = batch[start:]
                await self._settle(
                    unsent, [Delivery(row.id, ok=False, error=str(exc)) for row in unsent],
                    retry_now=True,
                )
                outcome.failed += len(unsent)
                outcome.stalled, outcome.error = True, str(exc)
                break
            await self._settle(chunk, deliveries)
            outcome.delivered += sum(1 for d in deliveries if d.ok)
            outcome.failed += sum(1 for d in deliveries if not d.ok)
            retryable = [d for d in deliveries if not d.ok and not d.permanent]
            if retryable:
                outcome.stalled = True
                outcome.error = outcome.error or retryable[0].error
        return outcome

    def _count(self, destination: Destination, outcome: _Outcome) -> None:
        health = self.mailbox.health
        health.processed += outcome.delivered
        health.failed += outcome.failed
        self._delivered[destination] += outcome.delivered
        self._failed[destination] += outcome.failed
        if not outcome.stalled:
            self._failures.pop(destination, None)
            self._resume_at.pop(destination, None)
            return
        self._failures[destination] += 1
        delay = self.policy.retry_delay(self._failures[destination])
        self._resume_at[destination] = trio.current_time() + delay
        if outcome.error is not None:
            sink = self.backends.sinks[destination]
            health.record_failure("DeliveryFailed", f"{sink.name}: {outcome.error}")
            log.warning("delivery_failed", sink=sink.name, failed=outcome.failed,
                        retry_in_seconds=round(delay, 3), error=outcome.error)

    async def _settle(
        self, batch: list[OutboxRow], deliveries: list[Delivery], *, retry_now: bool = False
    ) -> None:
        store = self.backends.store
        now = utcnow()
        attempts = {row.id: row.attempts for row in batch}
        delivered = [d.row_id for d in deliveries if d.ok]

        def retry_at(row_id: int) -> datetime:
            if retry_now:
                return now
            return now + timedelta(seconds=self.policy.retry_delay(attempts.get(row_id, 0) + 1))

        def write() -> None:
            if delivered:
                store.mark_delivered(delivered, now)
            for d in deliveries:
                if d.ok:
                    continue
                error = d.error or "unknown error"
                if d.permanent:
                    store.park(d.row_id, error, now)
                    log.error("event_parked", row_id=d.row_id, error=error)
                else:
                    store.mark_failed(d.row_id, error, retry_at(d.row_id))

        with trio.CancelScope(shield=True):
            await self.backends.in_db(write)

    async def prune(self) -> None:
        """Remove rows delivered more than ``OUTBOX_RETENTION_HOURS`` ago, in bounded batches.

        Pending and parked rows are never touched (the store's rule). A store
        that fails is reported in health and tried again on the next pass.
        """
        self._next_prune = trio.current_time() + self.policy.prune_interval
        retention = timedelta(hours=self.backends.settings.outbox_retention_hours)
        store = self.backends.store
        for destination in self.destinations:
            cutoff = utcnow() - retention
            removed = 0
            try:
                for _ in range(self.policy.prune_batches):
                    batch = await self.backends.in_db(
                        store.prune_delivered, [destination], cutoff, self.policy.prune_batch
                    )
                    removed += batch
                    if batch < self.policy.prune_batch:
                        break
            except DependencyUnavailable as exc:
                self.mailbox.health.record_error(exc)
                log.warning("outbox_prune_failed", destination=destination.value, error=str(exc))
            self._pruned[destination] += removed
            if removed:
                log.info("outbox_pruned", destination=destination.value, rows=removed,
                         delivered_before=cutoff.isoformat())
        await self._refresh_backlog()

    async def _refresh_backlog(self) -> None:
        store = self.backends.store

        def read() -> dict[Destination, OutboxStats]:
            return {d: store.outbox_stats(d) for d in self.destinations}

        stats = await self.backends.in_db(read)
        now = utcnow()
        self.mailbox.health.extra["backlog"] = {
            destination.value: {
                "pending": s.pending,
                "parked": s.parked,
                "oldest_pending_age_seconds": _age(s.oldest_pending_at, now),
                "delivered": self._delivered[destination],
                "failed": self._failed[destination],
                "pruned": self._pruned[destination],
            }
            for destination, s in stats.items()
        }


def _age(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    return round(max(0.0, (now - since).total_seconds()), 3)
