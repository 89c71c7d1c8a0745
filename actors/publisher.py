"""Publisher actors: drain the outbox to its sinks, at least once.

Two run this loop: ``audit_publisher`` (document events and audit events)
and ``alerter`` (integrity alerts). Each wakes on a nudge, sent right after
a commit that wrote events, and on a timer, so a missed nudge only delays.

Delivery: rows are leased (``claim_outbox``) so two publishers never send
one row at once, handed to the destination's sink, then marked delivered.
A row the sink rejects for good is parked with its error; a failure that
may pass (the queue unreachable) holds the row back with capped,
jittered exponential backoff. A crash between sending and marking means
the row is sent again later with the same ``event_id``: consumers dedupe.

Shutdown: closing the mailbox makes the loop drain what it can once more
and return.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

import attrs
import structlog
import trio

from actors.deps import Backends
from actors.runtime import Mailbox
from vault.errors import DependencyUnavailable
from vault.events import Destination, OutboxRow
from vault.models import utcnow
from vault.ports import Delivery, OutboxStats

log = structlog.get_logger("vault.publisher")


@attrs.frozen
class Nudge:
    """Events were committed: look at the outbox now."""


@attrs.frozen
class PublishPolicy:
    batch_size: int = 50
    sweep_interval: float = 5.0
    lease_seconds: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 60.0

    def retry_delay(self, attempts: int) -> float:
        """Capped exponential backoff with full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


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
        self._consecutive_failures = 0

    def nudge(self) -> None:
        """Ask for a drain soon; nudges coalesce while one is pending."""
        self.mailbox.tell_nowait(Nudge())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain on every nudge and every ``sweep_interval``; drain once more at close."""
        task_status.started()
        await self.drain()
        while True:
            wait = self.policy.sweep_interval
            if self._consecutive_failures:
                wait = self.policy.retry_delay(self._consecutive_failures)
            with trio.move_on_after(wait):
                try:
                    await self.mailbox.receive_channel.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    await self.drain()
                    return
                self._swallow_pending_nudges()
            await self.drain()

    def _swallow_pending_nudges(self) -> None:
        while True:
            try:
                self.mailbox.receive_channel.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    async def drain(self) -> None:
        """Send every due row, batch by batch, until none is left or a send fails."""
        health = self.mailbox.health
        while True:
            rows = await self.backends.in_db(
                self.backends.store.claim_outbox,
                self.destinations,
                self.policy.batch_size,
                utcnow(),
                self.policy.lease_seconds,
            )
            if not rows:
                break
            health.in_flight = len(rows)
            try:
                ok = await self._send(rows)
            finally:
                health.in_flight = 0
                health.touch()
            if not ok:
                break
        await self._refresh_backlog()

    async def _send(self, rows: list[OutboxRow]) -> bool:
        """Send one claimed batch; False when the sink could not take it."""
        health = self.mailbox.health
        by_destination: dict[Destination, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_destination[row.event.destination].append(row)
        all_ok = True
        for destination, batch in by_destination.items():
            sink = self.backends.sinks[destination]
            try:
                deliveries = await self.backends.in_sink(sink.send, batch)
            except DependencyUnavailable as exc:
                deliveries = [Delivery(row.id, ok=False, error=str(exc)) for row in batch]
            await self._settle(batch, deliveries)
            failures = [d for d in deliveries if not d.ok and not d.permanent]
            health.processed += sum(1 for d in deliveries if d.ok)
            health.failed += sum(1 for d in deliveries if not d.ok)
            if failures:
                all_ok = False
                self._consecutive_failures += 1
                health.last_error = {
                    "type": "DeliveryFailed",
                    "message": f"{sink.name}: {failures[0].error}",
                    "at": utcnow().isoformat(),
                }
                log.warning("delivery_failed", sink=sink.name, failed=len(failures),
                            error=failures[0].error)
        if all_ok:
            self._consecutive_failures = 0
        return all_ok

    async def _settle(self, batch: list[OutboxRow], deliveries: list[Delivery]) -> None:
        store = self.backends.store
        now = utcnow()
        attempts = {row.id: row.attempts for row in batch}
        delivered = [d.row_id for d in deliveries if d.ok]

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
                    delay = self.policy.retry_delay(attempts.get(d.row_id, 0) + 1)
                    store.mark_failed(d.row_id, error, now + timedelta(seconds=delay))

        with trio.CancelScope(shield=True):
            await self.backends.in_db(write)

    async def _refresh_backlog(self) -> None:
        store = self.backends.store

        def read() -> dict[str, OutboxStats]:
            return {d.value: store.outbox_stats(d) for d in self.destinations}

        stats = await self.backends.in_db(read)
        self.mailbox.health.extra["backlog"] = {
            name: {"pending": s.pending, "parked": s.parked} for name, s in stats.items()
        }
