"""The publishers' delivery policy: parked rows never block, a failing destination backs
off alone, leases are honoured, and a close flushes what backoff held back.

Every actor runs, as in ``test_publisher``; the sinks here are scripted per
event (refuse for good, fail a few times, be down, be slow), and one class
puts the real SQS sink on moto's server behind the audit publisher.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors.publisher import PublishPolicy
from actors.system import Vault
from tests.actors.helpers import (
    UNTIL_SECONDS,
    an_event,
    append,
    delivered,
    outbox,
    parked,
    rows_of,
    settled,
    until_rows,
    vault_on_sinks,
)
from tests.polling import eventually
from tests.support import test_settings
from vault.adapters.aws.clients import aws_client
from vault.adapters.aws.sinks import SqsSink
from vault.config import Settings
from vault.domain.errors import DependencyUnavailable
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.models import utcnow
from vault.ports import Delivery, EventSink

DOCUMENTS = Destination.DOCUMENT_EVENTS
AUDIT = Destination.AUDIT_EVENTS


class ScriptedSink:
    """An ``EventSink`` whose answer is scripted per event.

    ``refused`` events are rejected for good; ``flaky`` ones fail (retryably)
    as many times as their count says; ``down`` fails every call; the next
    calls take as many seconds as ``slow_calls`` lists, one each (a slow
    service, not a wait for anything).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.refused: set[UUID] = set()
        self.flaky: Counter[UUID] = Counter()
        self.slow_calls: list[float] = []
        self.calls: list[list[UUID]] = []
        self.delivered: list[UUID] = []

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        self.calls.append([row.event.event_id for row in rows])
        if self.slow_calls:
            time.sleep(self.slow_calls.pop(0))
        if self.down:
            raise DependencyUnavailable(f"{self.name} is unreachable")
        deliveries = []
        for row in rows:
            event_id = row.event.event_id
            if event_id in self.refused:
                deliveries.append(Delivery(row.id, ok=False, permanent=True, error="too large"))
            elif self.flaky[event_id] > 0:
                self.flaky[event_id] -= 1
                deliveries.append(Delivery(row.id, ok=False, error="InternalError"))
            else:
                self.delivered.append(event_id)
                deliveries.append(Delivery(row.id, ok=True))
        return deliveries

    def sent(self, event: OutboxEvent) -> int:
        """How many times ``event`` was handed to this sink."""
        return sum(call.count(event.event_id) for call in self.calls)


Sinks = dict[Destination, EventSink]


@pytest.fixture
def scripted() -> dict[Destination, ScriptedSink]:
    return {destination: ScriptedSink(f"scripted:{destination.value}")
            for destination in Destination}


@pytest.fixture
def sinks(scripted: dict[Destination, ScriptedSink]) -> Sinks:
    return dict(scripted)


@pytest.fixture
def publish_policy() -> PublishPolicy:
    """Quick retries and sweeps: a row due again is picked up within a few ticks."""
    return PublishPolicy(sweep_interval=0.05, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, sinks: Sinks, publish_policy: PublishPolicy
) -> AsyncIterator[Vault]:
    """Every actor running, with the scripted sinks (or those a class puts in their place)."""
    async with vault_on_sinks(nursery, settings, sinks, publish_policy) as running:
        yield running


def backlog(vault: Vault, destination: Destination) -> dict[str, Any]:
    figures: dict[str, Any] = vault.audit_publisher.mailbox.health.extra.get(
        "backlog", {}).get(destination.value, {})
    return figures


class TestMixedOutcomes:
    async def test_one_batch_with_refused_failing_and_good_rows(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """In one batch the refused row is parked, the failing one retried until it goes,
        and the good ones delivered once each."""
        await settled(vault)
        sink = scripted[DOCUMENTS]
        good, poison, flaky, more = (an_event() for _ in range(4))
        sink.refused.add(poison.event_id)
        sink.flaky[flaky.event_id] = 2
        await append(vault, [good, poison, flaky, more])
        vault.audit_publisher.nudge()
        await until_rows(vault, [good, flaky, more], delivered)
        await until_rows(vault, [poison], parked)
        assert sink.calls[0] == [e.event_id for e in (good, poison, flaky, more)]
        assert Counter(sink.delivered) == {good.event_id: 1, flaky.event_id: 1, more.event_id: 1}
        assert sink.sent(poison) == 1
        (flaky_row,) = await rows_of(vault, [flaky])
        assert flaky_row.attempts == 2
        assert flaky_row.last_error == "InternalError"

    @pytest.mark.parametrize("publish_policy", [PublishPolicy(batch_size=2, sweep_interval=3600)])
    async def test_parked_rows_do_not_hold_back_the_rows_behind_them(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """Five refused rows in front (more than two batches) delay nothing: one nudge
        delivers the three rows behind them, and each refused row is offered once."""
        await settled(vault)
        sink = scripted[DOCUMENTS]
        poison = [an_event() for _ in range(5)]
        behind = [an_event() for _ in range(3)]
        sink.refused.update(e.event_id for e in poison)
        await append(vault, [*poison, *behind])
        vault.audit_publisher.nudge()
        await until_rows(vault, behind, delivered)
        assert all(parked(row) for row in await rows_of(vault, poison))
        assert [sink.sent(e) for e in poison] == [1] * 5

        await eventually(lambda: backlog(vault, DOCUMENTS).get("parked") == 5,
                         "the backlog to count five parked rows", within=UNTIL_SECONDS)
        assert vault.audit_publisher.mailbox.health.last_error is None


class TestFailingDestination:
    @pytest.mark.parametrize(
        "publish_policy",
        [PublishPolicy(batch_size=5, sweep_interval=3600, backoff_initial=3600)],
    )
    async def test_the_other_destination_carries_on(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """With the audit topic down, one nudge still delivers a backlog of document events
        spread over several batches."""
        await settled(vault)
        scripted[AUDIT].down = True
        documents = [an_event() for _ in range(12)]
        audits = [an_event(AUDIT) for _ in range(2)]
        await append(vault, [*audits, *documents])
        vault.audit_publisher.nudge()
        await until_rows(vault, documents, delivered)
        await until_rows(vault, audits, lambda row: row.attempts >= 1)
        assert not any(delivered(row) for row in await rows_of(vault, audits))

    @pytest.mark.parametrize(
        "publish_policy", [PublishPolicy(sweep_interval=3600, backoff_initial=3600)]
    )
    async def test_nudges_leave_a_failing_destination_alone_during_its_backoff(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """After a failed send, later nudges do not call that sink again before its backoff
        ends, while they still deliver to the other destination."""
        await settled(vault)
        scripted[DOCUMENTS].down = True
        first = an_event()
        await append(vault, [first])
        vault.audit_publisher.nudge()
        await until_rows(vault, [first], lambda row: row.attempts == 1)
        for _ in range(3):
            audit = an_event(AUDIT)
            await append(vault, [an_event(), audit])
            vault.audit_publisher.nudge()
            await until_rows(vault, [audit], delivered)
        assert len(scripted[DOCUMENTS].calls) == 1

    @pytest.mark.parametrize(
        "publish_policy", [PublishPolicy(sweep_interval=3600, backoff_initial=3600)]
    )
    async def test_closing_flushes_rows_held_back_by_backoff(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """At close the publisher sends what failed before without waiting out the backoff."""
        await settled(vault)
        sink = scripted[DOCUMENTS]
        sink.down = True
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, lambda row: row.attempts == 1)
        sink.down = False
        with trio.fail_after(5):
            await vault.stop(5)
        assert all(delivered(row) for row in await rows_of(vault, events))
        assert Counter(sink.delivered) == {e.event_id: 1 for e in events}

    async def test_a_slow_last_drain_is_not_cut_short_by_the_timer(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """The drain at close runs to its end even when a sweep falls due during a send."""
        await settled(vault)
        sink = scripted[DOCUMENTS]
        events = [an_event() for _ in range(3)]
        sink.slow_calls = [0.3]
        await append(vault, events)
        with trio.fail_after(5):
            await vault.stop(5)
        assert all(delivered(row) for row in await rows_of(vault, events))

    @pytest.mark.parametrize(
        "publish_policy", [PublishPolicy(sweep_interval=3600, backoff_initial=3600)]
    )
    async def test_health_shows_figures_per_destination(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """The backlog counts each destination's pending, parked, delivered and failed rows,
        and the age of its oldest pending row."""
        await settled(vault)
        scripted[DOCUMENTS].down = True
        old = attrs.evolve(an_event(), created_at=utcnow() - timedelta(minutes=2))
        audit_ok, audit_refused = an_event(AUDIT), an_event(AUDIT)
        scripted[AUDIT].refused.add(audit_refused.event_id)
        await append(vault, [old, an_event(), audit_ok, audit_refused])
        vault.audit_publisher.nudge()
        await until_rows(vault, [audit_ok], delivered)

        await eventually(lambda: backlog(vault, DOCUMENTS).get("failed") == 2,
                         "the backlog to count two failed document events",
                         within=UNTIL_SECONDS)
        await wait_all_tasks_blocked()
        documents = backlog(vault, DOCUMENTS)
        assert {k: documents[k] for k in ("pending", "parked", "delivered", "failed")} == {
            "pending": 2, "parked": 0, "delivered": 0, "failed": 2,
        }
        assert documents["oldest_pending_age_seconds"] >= 120
        assert backlog(vault, AUDIT) == {
            "pending": 0, "parked": 1, "oldest_pending_age_seconds": 0.0,
            "delivered": 1, "failed": 1, "pruned": 0,
        }


class TestLease:
    async def test_rows_leased_by_another_publisher_are_not_sent(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """Rows another replica has claimed are left to it while their lease lasts."""
        await settled(vault)
        theirs = [an_event() for _ in range(2)]
        await append(vault, theirs)
        store = vault.backends.store
        claimed = await trio.to_thread.run_sync(
            store.claim_outbox, [DOCUMENTS], 10, utcnow(), 60.0
        )
        assert {row.event.event_id for row in claimed} == {e.event_id for e in theirs}
        ours = an_event()
        await append(vault, [ours])
        vault.audit_publisher.nudge()
        await until_rows(vault, [ours], delivered)
        assert scripted[DOCUMENTS].delivered == [ours.event_id]
        assert not any(delivered(row) for row in await rows_of(vault, theirs))

    @pytest.mark.parametrize("publish_policy", [PublishPolicy(batch_size=5, sweep_interval=3600)])
    async def test_two_replicas_never_send_one_row_twice(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink], settings: Settings,
        publish_policy: PublishPolicy, nursery: trio.Nursery,
    ) -> None:
        """Two vaults on one database, nudged together, drain sixty rows in batches of five
        through slow sinks: both take a share, and every row reaches one sink, once."""
        await settled(vault)
        other_sinks = {d: ScriptedSink(f"replica:{d.value}") for d in Destination}
        for sink in (scripted[DOCUMENTS], other_sinks[DOCUMENTS]):
            sink.slow_calls = [0.02] * 12
        async with vault_on_sinks(nursery, settings, other_sinks, publish_policy) as replica:
            events = [an_event() for _ in range(60)]
            await append(vault, events)
            vault.audit_publisher.nudge()
            replica.audit_publisher.nudge()
            await until_rows(vault, events, delivered)
        ours, theirs = scripted[DOCUMENTS].delivered, other_sinks[DOCUMENTS].delivered
        assert ours and theirs
        assert sorted(ours + theirs) == sorted(e.event_id for e in events)

    @pytest.mark.parametrize(
        "publish_policy",
        [PublishPolicy(send_chunk=1, lease_seconds=0.6, send_window=0.5, sweep_interval=0.05,
                       backoff_initial=0.01, backoff_max=0.05)],
    )
    async def test_rows_are_not_handed_over_late_in_their_lease(
        self, vault: Vault, scripted: dict[Destination, ScriptedSink]
    ) -> None:
        """Once half the lease has gone on a slow send, the rest of the batch is not sent
        in that pass; it goes, once, after the lease has run out."""
        await settled(vault)
        sink = scripted[DOCUMENTS]
        sink.slow_calls = [0.4]
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, delivered)
        assert sink.calls == [[e.event_id] for e in events]
        rest = [row for row in await outbox(vault) if row.event_id != str(events[0].event_id)]
        assert [row.attempts for row in rest] == [0, 0]


class TestOnMoto:
    @pytest.fixture
    def queue_url(self, aws_env: str, tmp_path: Path) -> tuple[Any, str]:
        sqs = aws_client(test_settings(tmp_path, aws_endpoint_url=aws_env), "sqs")
        url = sqs.create_queue(
            QueueName=f"events-{uuid.uuid4().hex}", Attributes={"MaximumMessageSize": "1024"}
        )["QueueUrl"]
        return sqs, url

    @pytest.fixture
    def sinks(self, scripted: dict[Destination, ScriptedSink], queue_url: tuple[Any, str]) -> Sinks:
        sqs, url = queue_url
        return {**scripted, DOCUMENTS: SqsSink("sqs:document_events", sqs, url)}

    async def test_an_oversized_event_is_parked_and_the_rest_delivered(
        self, vault: Vault, queue_url: tuple[Any, str]
    ) -> None:
        """The queue refuses one event of a batch for its size: that one is parked with
        the service's error, the others arrive once each, and nothing stays pending."""
        sqs, url = queue_url
        await settled(vault)
        small = [an_event() for _ in range(3)]
        big = attrs.evolve(an_event(), body={**an_event().body, "padding": "p" * 2000})
        await append(vault, [small[0], big, *small[1:]])
        vault.audit_publisher.nudge()
        await until_rows(vault, small, delivered)
        await until_rows(vault, [big], parked)
        (big_row,) = await rows_of(vault, [big])
        assert big_row.last_error is not None
        assert big_row.last_error.startswith("InvalidParameterValue: ")

        def receive() -> list[str]:
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            return [json.loads(m["Body"])["event_id"] for m in answer.get("Messages", [])]

        received = await trio.to_thread.run_sync(receive)
        assert sorted(received) == sorted(str(e.event_id) for e in small)
        assert vault.audit_publisher.mailbox.health.last_error is None
