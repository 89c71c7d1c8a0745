"""Delivered outbox rows are pruned after OUTBOX_RETENTION_HOURS, in bounded batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from actors.publisher import PublishPolicy
from actors.system import Vault
from tests.actors.helpers import (
    FakeSink,
    an_event,
    append,
    outbox,
    parked,
    rows_of,
    settled,
    until_rows,
    vault_on_sinks,
)
from tests.polling import eventually
from tests.support import test_settings
from vault.config import Settings
from vault.domain.events import Destination, OutboxEvent
from vault.domain.models import utcnow

DOCUMENTS = Destination.DOCUMENT_EVENTS
AUDIT = Destination.AUDIT_EVENTS


@pytest.fixture
def sinks() -> dict[Destination, FakeSink]:
    return {d: FakeSink(f"fake:{d.value}") for d in Destination}


def pruned(vault: Vault, destination: Destination) -> int:
    backlog = vault.audit_publisher.mailbox.health.extra.get("backlog", {})
    return int(backlog.get(destination.value, {}).get("pruned", 0))


async def deliver_at(vault: Vault, events: list[OutboxEvent], age: timedelta) -> None:
    """Append ``events`` and mark them delivered ``age`` ago, as a long-gone drain would."""
    await append(vault, events)
    store = vault.backends.store
    rows = await vault.backends.in_db(
        store.claim_outbox, [events[0].destination], len(events), utcnow(), 60.0
    )
    await vault.backends.in_db(store.mark_delivered, [row.id for row in rows], utcnow() - age)


class TestRetention:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", outbox_retention_hours=1.0)

    @pytest.fixture
    async def vault(
        self, nursery: trio.Nursery, settings: Settings, sinks: dict[Destination, FakeSink]
    ) -> AsyncIterator[Vault]:
        """Publishers that prune only when asked, in batches of two rows, three a pass."""
        policy = PublishPolicy(sweep_interval=3600, prune_interval=3600, prune_batch=2,
                               prune_batches=3)  # fmt: skip
        async with vault_on_sinks(nursery, settings, sinks, policy) as running:
            yield running

    async def test_rows_delivered_before_the_retention_go(self, vault: Vault) -> None:
        """Rows delivered two hours ago are removed; those delivered a minute ago stay."""
        await settled(vault)
        old, recent = [an_event() for _ in range(3)], [an_event() for _ in range(2)]
        await deliver_at(vault, old, timedelta(hours=2))
        await deliver_at(vault, recent, timedelta(minutes=1))

        await vault.audit_publisher.prune()

        assert await rows_of(vault, old) == []
        assert [row.event_id for row in await rows_of(vault, recent)] == [
            str(e.event_id) for e in recent
        ]
        assert pruned(vault, DOCUMENTS) == 3

    async def test_pending_and_parked_rows_are_never_pruned(
        self, vault: Vault, sinks: dict[Destination, FakeSink]
    ) -> None:
        """However old, a row not yet delivered and a row set aside both stay."""
        await settled(vault)
        sinks[AUDIT].refused = {(refused := an_event(AUDIT)).event_id}
        await append(vault, [refused])
        vault.audit_publisher.nudge()
        await until_rows(vault, [refused], parked)
        sinks[DOCUMENTS].down = True
        waiting = an_event()
        await append(vault, [waiting])

        await vault.audit_publisher.prune()

        assert [row.event_id for row in await outbox(vault)] == [
            str(refused.event_id), str(waiting.event_id),
        ]  # fmt: skip
        assert pruned(vault, AUDIT) == pruned(vault, DOCUMENTS) == 0

    async def test_a_pass_is_bounded_and_the_next_one_goes_on(self, vault: Vault) -> None:
        """Seven old rows, two a statement and three statements a pass: six, then one."""
        await settled(vault)
        old = [an_event() for _ in range(7)]
        await deliver_at(vault, old, timedelta(hours=3))

        await vault.audit_publisher.prune()
        first = len(await rows_of(vault, old))
        await vault.audit_publisher.prune()

        assert (first, len(await rows_of(vault, old))) == (1, 0)
        assert pruned(vault, DOCUMENTS) == 7


class TestOnItsOwn:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", outbox_retention_hours=0.0)

    @pytest.fixture
    async def vault(
        self, nursery: trio.Nursery, settings: Settings, sinks: dict[Destination, FakeSink]
    ) -> AsyncIterator[Vault]:
        policy = PublishPolicy(sweep_interval=0.05, prune_interval=0.05)
        async with vault_on_sinks(nursery, settings, sinks, policy) as running:
            yield running

    async def test_delivered_rows_are_pruned_without_being_asked(
        self, vault: Vault, sinks: dict[Destination, FakeSink]
    ) -> None:
        """With no retention, a publisher's own passes empty the outbox of delivered rows."""
        await settled(vault)
        events = [an_event(), an_event(AUDIT)]
        await append(vault, events)
        vault.audit_publisher.nudge()

        await eventually(
            lambda: pruned(vault, DOCUMENTS) == pruned(vault, AUDIT) == 1,
            "a prune pass to count one row of each destination",
        )
        assert await outbox(vault) == []
        assert sinks[DOCUMENTS].delivered_ids == {events[0].event_id}
        assert sinks[AUDIT].delivered_ids == {events[1].event_id}
