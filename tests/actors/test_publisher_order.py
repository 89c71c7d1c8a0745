"""A document's events reach a destination in order, even when the first one is retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from uuid import UUID, uuid4

import attrs
import pytest
import trio

from actors.publisher import PublishPolicy
from actors.system import Vault
from tests.actors.helpers import FakeSink, an_event, append, settled, vault_on_sinks
from tests.polling import eventually
from vault.config import Settings
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.ports import Delivery

DOCUMENTS = Destination.DOCUMENT_EVENTS


class FailsFirstAttempt(FakeSink):
    """Fails each event named in ``flaky`` on its first attempt, then takes it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.flaky: set[UUID] = set()
        self.attempts: list[UUID] = []

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        deliveries = []
        for row in rows:
            event_id = row.event.event_id
            self.attempts.append(event_id)
            if event_id in self.flaky:
                self.flaky.discard(event_id)
                deliveries.append(Delivery(row.id, ok=False, error="throttled"))
            else:
                self.delivered.append(row)
                deliveries.append(Delivery(row.id, ok=True))
        return deliveries


@pytest.fixture
def sink() -> FailsFirstAttempt:
    return FailsFirstAttempt("flaky:document_events")


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, sink: FailsFirstAttempt
) -> AsyncIterator[Vault]:
    sinks = {d: FakeSink(f"fake:{d.value}") for d in Destination}
    sinks[DOCUMENTS] = sink
    policy = PublishPolicy(sweep_interval=0.02, backoff_initial=0.01, backoff_max=0.02)
    async with vault_on_sinks(nursery, settings, sinks, policy) as running:
        yield running


def of_document(document: str) -> OutboxEvent:
    return attrs.evolve(an_event(), group_id=document)


async def test_a_later_event_waits_for_the_earlier_ones_retry(
    vault: Vault, sink: FailsFirstAttempt
) -> None:
    """The first event fails once; the second, appended with it, is sent only after it."""
    await settled(vault)
    document = str(uuid4())
    first, second = of_document(document), of_document(document)
    sink.flaky.add(first.event_id)
    await append(vault, [first, second])
    vault.audit_publisher.nudge()

    await eventually(lambda: len(sink.delivered) == 2, "both events to be delivered")

    assert [row.event.event_id for row in sink.delivered] == [first.event_id, second.event_id]
    assert sink.attempts == [first.event_id, first.event_id, second.event_id]


async def test_other_documents_do_not_wait(vault: Vault, sink: FailsFirstAttempt) -> None:
    """Another document's event goes out while the first document's is being retried."""
    await settled(vault)
    stuck, other = of_document(str(uuid4())), of_document(str(uuid4()))
    sink.flaky.add(stuck.event_id)
    await append(vault, [stuck, other])
    vault.audit_publisher.nudge()

    await eventually(lambda: len(sink.delivered) == 2, "both events to be delivered")

    assert [row.event.event_id for row in sink.delivered] == [other.event_id, stuck.event_id]
