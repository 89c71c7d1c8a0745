"""The publisher actors: drain the outbox to the sinks, at least once, through failures.

These run every actor on fake sinks. Unless a class says otherwise the
sweep timer is an hour long, so only nudges (and retries after a failure)
make a publisher drain; waiting for a drain means polling the outbox (which
the publishers change in worker threads) with ``eventually``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors.publisher import PublishPolicy
from actors.system import Vault
from tests.actors.helpers import (
    UNTIL_SECONDS,
    FakeSink,
    an_event,
    append,
    delivered,
    object_path,
    outbox,
    rows_of,
    settled,
    store_document,
    until_rows,
    vault_on_sinks,
    verify,
)
from tests.polling import eventually
from tests.support import pdf_bytes
from vault.config import Settings
from vault.domain.events import Destination

Sinks = dict[Destination, FakeSink]


@pytest.fixture
def sinks() -> Sinks:
    return {destination: FakeSink(f"fake:{destination.value}") for destination in Destination}


@pytest.fixture
def publish_policy() -> PublishPolicy:
    return PublishPolicy(sweep_interval=3600, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, sinks: Sinks, publish_policy: PublishPolicy
) -> AsyncIterator[Vault]:
    """Every actor running, with fake sinks."""
    async with vault_on_sinks(nursery, settings, sinks, publish_policy) as running:
        yield running


async def until_backlog(vault: Vault, expected: dict[str, int]) -> None:
    """Wait until the audit publisher's health shows these document-events figures."""
    health = vault.audit_publisher.mailbox.health

    def shows() -> bool:
        figures = health.extra.get("backlog", {}).get("document_events", {})
        return {name: figures.get(name) for name in expected} == expected

    await eventually(shows, f"the document-events backlog to show {expected}",
                     within=UNTIL_SECONDS)


class TestDelivery:
    async def test_rows_wait_in_the_outbox_without_a_nudge(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """Between sweeps, committed rows stay pending until someone nudges the publisher."""
        await settled(vault)
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        await wait_all_tasks_blocked()
        assert not [row for row in await rows_of(vault, events) if delivered(row)]
        assert sinks[Destination.DOCUMENT_EVENTS].delivered == []

    async def test_a_nudge_gets_pending_rows_delivered(self, vault: Vault, sinks: Sinks) -> None:
        """After a nudge every pending row reaches its sink once and is marked delivered."""
        await settled(vault)
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, delivered)
        sink = sinks[Destination.DOCUMENT_EVENTS]
        assert sorted(str(row.event.event_id) for row in sink.delivered) == sorted(
            str(event.event_id) for event in events
        )

    async def test_an_upload_nudges_the_audit_publisher(self, vault: Vault, sinks: Sinks) -> None:
        """The upload's document event and audit event reach their own sinks."""
        await settled(vault)
        doc = await store_document(vault, pdf_bytes(100))

        async def both_delivered() -> bool:
            rows = await outbox(vault, doc.id)
            return len(rows) == 2 and all(delivered(row) for row in rows)

        await eventually(both_delivered, "both events of the upload to be delivered",
                         within=UNTIL_SECONDS)
        for destination in (Destination.DOCUMENT_EVENTS, Destination.AUDIT_EVENTS):
            (row,) = sinks[destination].delivered
            assert row.event.group_id == str(doc.id)

    async def test_delivered_rows_are_counted_in_health(self, vault: Vault) -> None:
        """``processed`` counts delivered rows and the backlog shows none pending."""
        await settled(vault)
        events = [an_event() for _ in range(4)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, delivered)
        await wait_all_tasks_blocked()
        health = vault.audit_publisher.mailbox.health
        assert health.processed == 4
        assert health.failed == 0


class TestUnreachableSink:
    @pytest.fixture
    def publish_policy(self) -> PublishPolicy:
        """Short retries and sweeps: rows not yet due at a retry are swept up soon after."""
        return PublishPolicy(sweep_interval=0.05, backoff_initial=0.01, backoff_max=0.05)

    async def test_a_failing_sink_leaves_rows_pending_with_attempts_counted(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """Rows the sink could not take stay undelivered, each failed attempt counted."""
        await settled(vault)
        sinks[Destination.DOCUMENT_EVENTS].down = True
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, lambda row: row.attempts >= 1)
        for row in await rows_of(vault, events):
            assert row.delivered_at is None
            assert row.parked_at is None
            assert row.last_error == "fake:document_events is unreachable"

    async def test_a_failing_sink_shows_in_health(self, vault: Vault, sinks: Sinks) -> None:
        """The publisher's ``last_error`` names the sink and its error; it does not crash."""
        await settled(vault)
        sinks[Destination.DOCUMENT_EVENTS].down = True
        events = [an_event()]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, lambda row: row.attempts >= 1)
        await wait_all_tasks_blocked()
        health = vault.audit_publisher.mailbox.health
        assert health.last_error is not None
        assert health.last_error["type"] == "DeliveryFailed"
        assert health.last_error["message"] == (
            "fake:document_events: fake:document_events is unreachable"
        )
        assert health.failed >= 1
        assert (health.state.value, health.restarts) == ("running", 0)

    async def test_the_backlog_counts_held_back_rows(self, vault: Vault, sinks: Sinks) -> None:
        """Health shows the rows waiting for the sink as pending."""
        await settled(vault)
        sinks[Destination.DOCUMENT_EVENTS].down = True
        await append(vault, [an_event() for _ in range(3)])
        vault.audit_publisher.nudge()
        await until_backlog(vault, {"pending": 3, "parked": 0})

    async def test_held_back_rows_are_delivered_once_the_sink_recovers(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """With the sink back, the publisher's own retry delivers every held-back row."""
        await settled(vault)
        sink = sinks[Destination.DOCUMENT_EVENTS]
        sink.down = True
        events = [an_event() for _ in range(3)]
        await append(vault, events)
        vault.audit_publisher.nudge()
        await until_rows(vault, events, lambda row: row.attempts >= 1)

        sink.down = False
        await until_rows(vault, events, delivered)
        assert {event.event_id for event in events} <= sink.delivered_ids
        assert len(sink.delivered) == len(events)


class TestPermanentFailure:
    @pytest.fixture
    def publish_policy(self) -> PublishPolicy:
        """One row per batch, so the rows behind a parked one come in later batches."""
        return PublishPolicy(batch_size=1, sweep_interval=3600)

    async def test_a_refused_row_is_parked(self, vault: Vault, sinks: Sinks) -> None:
        """A row the sink refuses for good is parked with its error, not retried."""
        await settled(vault)
        poison = an_event()
        sinks[Destination.DOCUMENT_EVENTS].refused.add(poison.event_id)
        await append(vault, [poison])
        vault.audit_publisher.nudge()
        await until_rows(vault, [poison], lambda row: row.parked_at is not None)
        (row,) = await rows_of(vault, [poison])
        assert row.delivered_at is None
        assert row.last_error == "rejected"
        assert row.attempts == 0

    async def test_rows_behind_a_parked_row_are_still_delivered(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """One bad row does not block the ones committed after it."""
        await settled(vault)
        poison, *behind = [an_event() for _ in range(3)]
        sinks[Destination.DOCUMENT_EVENTS].refused.add(poison.event_id)
        await append(vault, [poison, *behind])
        vault.audit_publisher.nudge()
        await until_rows(vault, behind, delivered)
        (parked,) = await rows_of(vault, [poison])
        assert parked.parked_at is not None
        assert sinks[Destination.DOCUMENT_EVENTS].delivered_ids == {e.event_id for e in behind}

    async def test_a_refused_row_is_not_a_delivery_failure(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """Parking is final, not an outage: the publisher reports no ``last_error``."""
        await settled(vault)
        poison = an_event()
        sinks[Destination.DOCUMENT_EVENTS].refused.add(poison.event_id)
        await append(vault, [poison])
        vault.audit_publisher.nudge()
        await until_backlog(vault, {"pending": 0, "parked": 1})
        health = vault.audit_publisher.mailbox.health
        assert health.last_error is None
        assert health.failed == 1

    async def test_the_backlog_counts_parked_rows(self, vault: Vault, sinks: Sinks) -> None:
        """Health shows the parked row apart from the pending ones."""
        await settled(vault)
        poison, behind = an_event(), an_event()
        sinks[Destination.DOCUMENT_EVENTS].refused.add(poison.event_id)
        await append(vault, [poison, behind])
        vault.audit_publisher.nudge()
        await until_backlog(vault, {"pending": 0, "parked": 1})
        (row,) = await rows_of(vault, [behind])
        assert delivered(row)


class TestShutdown:
    async def test_closing_the_mailbox_drains_once_more(self, vault: Vault, sinks: Sinks) -> None:
        """``stop`` lets the publisher deliver what is pending before it stops."""
        await settled(vault)
        events = [an_event(), an_event(Destination.AUDIT_EVENTS)]
        await append(vault, events)
        await vault.stop(5)
        assert all(delivered(row) for row in await rows_of(vault, events))
        assert vault.audit_publisher.mailbox.health.state.value == "stopped"

    async def test_the_alerter_drains_on_stop_too(self, vault: Vault, sinks: Sinks) -> None:
        """Integrity alerts pending at shutdown reach the alert sink."""
        await settled(vault)
        alert = an_event(Destination.INTEGRITY_ALERTS)
        await append(vault, [alert])
        await vault.stop(5)
        assert sinks[Destination.INTEGRITY_ALERTS].delivered_ids == {alert.event_id}


class TestAlerter:
    async def test_a_mismatch_reaches_the_alert_sink(self, vault: Vault, sinks: Sinks) -> None:
        """The verifier nudges the alerter, which delivers the integrity alert."""
        await settled(vault)
        doc = await store_document(vault, pdf_bytes(100))
        await trio.to_thread.run_sync(object_path(vault, doc.storage_key).unlink)
        await verify(vault, doc.id)

        await eventually(lambda: sinks[Destination.INTEGRITY_ALERTS].delivered,
                         "the integrity alert to reach its sink", within=UNTIL_SECONDS)
        (row,) = sinks[Destination.INTEGRITY_ALERTS].delivered
        assert row.event.body["document_id"] == str(doc.id)
        assert row.event.body["calculated_hash"] is None

    async def test_each_publisher_takes_only_its_own_destinations(
        self, vault: Vault, sinks: Sinks
    ) -> None:
        """A nudge to the audit publisher leaves integrity alerts to the alerter."""
        await settled(vault)
        alert, document_event = an_event(Destination.INTEGRITY_ALERTS), an_event()
        await append(vault, [alert, document_event])
        vault.audit_publisher.nudge()
        await until_rows(vault, [document_event], delivered)
        (alert_row,) = await rows_of(vault, [alert])
        assert alert_row.delivered_at is None
        assert sinks[Destination.INTEGRITY_ALERTS].delivered == []
