"""Incident notifications end to end: a tampered file, the alerter, a real webhook receiver.

Every actor runs on SQLite and local blobs; the incident notifications go
through the outbox to ``WebhookSink`` POSTing to a receiver on loopback
whose answers a test scripts: it fails, hangs past the sink's timeout,
refuses, and accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
import trio

from actors.publisher import PublishPolicy
from actors.system import Vault
from tests.actors.helpers import (
    OutboxRecord,
    a_user,
    object_path,
    outbox,
    parked,
    store_document,
    upload_form,
    vault_on_sinks,
    verify,
)
from tests.polling import eventually
from tests.support import pdf_bytes
from tests.webhook_receiver import WebhookReceiver
from vault.adapters.webhook import WebhookSink
from vault.config import Settings
from vault.domain.events import Destination
from vault.domain.models import Document, DocumentStatus, Role
from vault.wiring import event_sinks

TIMEOUT = 0.3
POLICY = PublishPolicy(sweep_interval=0.1, backoff_initial=0.05, backoff_max=0.2)
NOTIFICATIONS = Destination.INCIDENT_NOTIFICATIONS.value


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver.running() as running:
        yield running


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, receiver: WebhookReceiver
) -> AsyncIterator[Vault]:
    sink = WebhookSink(receiver.url, timeout=TIMEOUT)
    sinks = {**event_sinks(settings), Destination.INCIDENT_NOTIFICATIONS: sink}
    try:
        async with vault_on_sinks(nursery, settings, sinks, POLICY) as running:
            yield running
    finally:
        sink.close()


async def tampered(vault: Vault) -> Document:
    """A stored document whose file was changed on disk, verified: a mismatch."""
    doc = await store_document(vault, pdf_bytes(5000), upload_form())
    path = object_path(vault, doc.storage_key)
    raw = bytearray(await trio.to_thread.run_sync(path.read_bytes))
    raw[len(raw) // 2] ^= 0x01
    await trio.to_thread.run_sync(path.write_bytes, bytes(raw))
    checked = await verify(vault, doc.id)
    assert checked.status is DocumentStatus.MISMATCH
    return doc


async def settled_rows(vault: Vault, count: int) -> list[OutboxRecord]:
    """The notification rows, once ``count`` of them are delivered or parked."""

    async def done() -> list[OutboxRecord] | None:
        rows = [r for r in await outbox(vault) if r.destination == NOTIFICATIONS]
        settled = [r for r in rows if r.delivered_at is not None or parked(r)]
        return rows if len(settled) >= count else None

    check: Callable[[], Awaitable[list[OutboxRecord] | None]] = done
    return await eventually(check, f"{count} notification rows settled")


async def accepted(receiver: WebhookReceiver, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        bodies = receiver.answered(200)
        return bodies if len(bodies) >= count else None

    return await eventually(enough, f"{count} notifications accepted")


async def test_a_failing_then_hanging_receiver_gets_every_notification_in_order(
    vault: Vault, receiver: WebhookReceiver
) -> None:
    receiver.then(500, "hang")
    doc = await tampered(vault)
    opened, frozen = await accepted(receiver, 2)
    assert [opened["event_type"], frozen["event_type"]] == ["incident.opened", "entity.frozen"]
    assert opened["document"]["document_id"] == str(doc.id)
    assert frozen["incident_id"] == opened["incident_id"]
    assert opened["text"].startswith(f"Integrity incident {opened['incident_id']} opened")
    # It failed, then hung: the opening was tried twice before it got through, and the
    # freeze (its entity's next notification) waited behind it.
    tried = [call.body["event_type"] for call in receiver.calls]
    assert tried == ["incident.opened"] * 3 + ["entity.frozen"]
    assert [call.answer for call in receiver.calls[:3]] == [500, "hang", 200]
    rows = await settled_rows(vault, 2)
    assert [(r.kind, r.attempts) for r in rows] == [("incident.opened", 2), ("entity.frozen", 0)]
    assert "did not answer in time" in (rows[0].last_error or "")

    # Resolving (as the route does) and unfreezing are notified too.
    officer = a_user(Role.COMPLIANCE_OFFICER)
    resolved = await vault.incidents.resolve(
        UUID(opened["incident_id"]), officer, "restored from the signed original"
    )
    await vault.freezes.change(doc.entity_id, frozen=False, actor=officer,
                               reason="file restored", correlation_id="req-u")
    later = (await accepted(receiver, 4))[2:]
    assert [b["event_type"] for b in later] == ["incident.resolved", "entity.unfrozen"]
    assert later[0]["resolution"] == resolved.resolution
    assert later[1]["by"] == str(officer.id)


async def test_a_refused_notification_is_parked_and_the_next_goes_on(
    vault: Vault, receiver: WebhookReceiver
) -> None:
    receiver.then(400)
    await tampered(vault)
    (frozen,) = await accepted(receiver, 1)
    assert frozen["event_type"] == "entity.frozen"
    rows = await settled_rows(vault, 2)
    assert [(r.kind, parked(r)) for r in rows] == [("incident.opened", True),
                                                  ("entity.frozen", False)]
    error = rows[0].last_error or ""
    assert "refused the message: HTTP 400" in error
    assert "s3cr3t" not in error

