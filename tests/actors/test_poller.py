"""The entity-deletion poller against moto's SQS on loopback, with the real actors on SQLite."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import trio

from actors.poller import EntityDeletionPoller
from actors.runtime import ActorState, Mailbox
from actors.system import Sizing, Vault, run_vault
from tests.actors.helpers import database_path
from tests.polling import eventually
from tests.support import test_settings
from tests.system.poller_support import (
    VaultDb,
    entity_event,
    enveloped,
    flat,
    new_queue,
    queue_depth,
    send,
    sqs_client,
)
from vault.adapters.aws.clients import aws_client
from vault.adapters.aws.queue import SqsQueue
from vault.config import Settings
from vault.domain.errors import StoreUnavailable
from vault.domain.models import Document
from vault.ports import CascadeBatch, MetadataStore
from vault_http.serve import build_backends

EVENTUALLY_SECONDS = 20.0
POLL_SECONDS = 0.05


@pytest.fixture
def sqs(aws_env: str) -> Any:
    return sqs_client(aws_env)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return new_queue(sqs)


@pytest.fixture
def settings(tmp_path: Path, aws_env: str, queue_url: str) -> Settings:
    """The consumer on the test's queue: one-second long polls, messages back after a second."""
    return test_settings(
        tmp_path / "data",
        document_vault_sqs_url=queue_url,
        aws_endpoint_url=aws_env,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_region="us-east-1",
        document_consumer_wait_time=1,
        document_consumer_visibility_timeout=1,
        shutdown_grace_seconds=5,
    )


StoreWrapper = Callable[[MetadataStore], MetadataStore]
StartVault = Callable[..., Awaitable[Vault]]


@pytest.fixture
async def start_vault(nursery: trio.Nursery, settings: Settings) -> AsyncIterator[StartVault]:
    """Start every actor, optionally with a wrapped store or other settings; stopped at the end."""
    started: list[Vault] = []

    async def start(
        wrap: StoreWrapper | None = None, settings_: Settings | None = None
    ) -> Vault:
        backends, _signer = await trio.to_thread.run_sync(build_backends, settings_ or settings)
        if wrap is not None:
            backends = attrs.evolve(backends, store=wrap(backends.store))
        vault: Vault = await nursery.start(run_vault, backends, Sizing())
        started.append(vault)
        return vault

    yield start
    for vault in started:
        await vault.stop(5)
        await trio.to_thread.run_sync(vault.backends.store.close)


class SlowCascades:
    """The real store, with cascades in small batches that each take a while.

    ``fail_on_document``: building the events of the n-th document (counted
    over every call) raises ``StoreUnavailable`` inside the batch's
    transaction, once.
    """

    def __init__(
        self,
        inner: MetadataStore,
        *,
        batch_size: int = 2,
        pause: float = 0.0,
        fail_on_document: int | None = None,
    ) -> None:
        self.inner = inner
        self.batch_size = batch_size
        self.pause = pause
        self.fail_on_document = fail_on_document
        self.documents = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def archive_entity(self, **kwargs: Any) -> CascadeBatch | None:
        events = kwargs["events"]

        def counted(doc: Document) -> Any:
            self.documents += 1
            if self.documents == self.fail_on_document:
                raise StoreUnavailable("injected failure in the middle of a batch")
            return events(doc)

        time.sleep(self.pause)
        kwargs.update(events=counted, batch_size=self.batch_size)
        return self.inner.archive_entity(**kwargs)


def slow(**options: Any) -> StoreWrapper:
    return lambda inner: cast(MetadataStore, SlowCascades(inner, **options))


def db_of(vault: Vault) -> VaultDb:
    return VaultDb(sqlite_path=database_path(vault))


async def until_drained(sqs: Any, queue_url: str, what: str) -> None:
    """Wait until the queue holds no message, visible or in flight (moto is asked from a
    worker thread; it signals nothing this task could await)."""
    await eventually(
        lambda: queue_depth(sqs, queue_url) == (0, 0), what,
        within=EVENTUALLY_SECONDS, interval=POLL_SECONDS, in_thread=True,
    )


async def with_entity(vault: Vault, documents: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    entity_id = uuid.uuid4()
    ids = await trio.to_thread.run_sync(db_of(vault).insert_documents, entity_id, documents)
    return entity_id, ids


class TestEvents:
    @pytest.mark.parametrize("wrap", [flat, enveloped], ids=["flat", "sns-envelope"])
    async def test_an_event_archives_the_entity_and_deletes_the_message(
        self, start_vault: StartVault, sqs: Any, queue_url: str, wrap: Callable[..., str]
    ) -> None:
        """A plain event, or one unwrapped from its SNS notification, archives every live
        document of the entity, then leaves the queue."""
        vault = await start_vault()
        entity_id, ids = await with_entity(vault, 3)
        event = entity_event(entity_id)

        send(sqs, queue_url, wrap(event))

        await until_drained(sqs, queue_url, "the message to be deleted")
        db = db_of(vault)
        assert db.statuses(entity_id) == {"archived": 3}
        assert db.processed(event["event_id"]) == 1
        assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        # Counted once the delete has returned, which the queue may show first.
        await eventually(lambda: vault.poller.health.processed == 1, "the message to be counted")

    async def test_duplicate_delivery_archives_once(
        self, start_vault: StartVault, sqs: Any, queue_url: str
    ) -> None:
        """The same event twice (flat, then enveloped) archives and announces each document once."""
        vault = await start_vault()
        entity_id, ids = await with_entity(vault, 3)
        event = entity_event(entity_id)

        send(sqs, queue_url, flat(event), enveloped(event))

        await until_drained(sqs, queue_url, "both messages to be deleted")
        db = db_of(vault)
        assert db.processed(event["event_id"]) == 1
        assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        await eventually(lambda: vault.poller.health.processed == 2, "both messages counted")
        assert vault.poller.health.failed == 0

    async def test_entity_type_the_vault_does_not_hold_is_recorded(
        self, start_vault: StartVault, sqs: Any, queue_url: str
    ) -> None:
        """A deleted ``fund`` archives nothing, is remembered as processed, and is acknowledged."""
        vault = await start_vault()
        bystander, _ = await with_entity(vault, 1)
        event = entity_event(entity_type="fund")

        send(sqs, queue_url, flat(event))

        await until_drained(sqs, queue_url, "the message to be deleted")
        assert db_of(vault).processed(event["event_id"]) == 1
        assert db_of(vault).statuses(bystander) == {"uploaded": 1}


class TestBadInput:
    @pytest.mark.parametrize(
        "body",
        [
            "not json at all",
            "[1, 2, 3]",
            '{"event_id": "e1", "action": "entity.deleted", "entity_type": "issuer"}',
            '{"event_id": "e1", "action": "entity.deleted", "entity_id": "nope",'
            ' "entity_type": "issuer"}',
            '{"Type": "Notification", "Message": "{not json"}',
            '{"Type": "Notification", "Message": {"event_id": "e1"}}',
        ],
        ids=["not-json", "not-object", "no-entity-id", "bad-uuid", "bad-envelope",
             "envelope-object"],
    )
    async def test_unprocessable_body_is_deleted(
        self, start_vault: StartVault, sqs: Any, queue_url: str, body: str
    ) -> None:
        """A body that can never be processed is logged and deleted, not retried."""
        vault = await start_vault()

        send(sqs, queue_url, body)

        await until_drained(sqs, queue_url, "the message to be deleted")
        assert vault.poller.health.failed == 0
        assert db_of(vault).query("SELECT count(*) FROM processed_events") == [(0,)]

    async def test_other_actions_are_acknowledged_without_archiving(
        self, start_vault: StartVault, sqs: Any, queue_url: str
    ) -> None:
        """An ``entity.updated`` event changes nothing and leaves the queue."""
        vault = await start_vault()
        entity_id, _ = await with_entity(vault, 1)

        send(sqs, queue_url, flat({**entity_event(entity_id), "action": "entity.updated"}))

        await until_drained(sqs, queue_url, "the message to be deleted")
        assert db_of(vault).statuses(entity_id) == {"uploaded": 1}


class TestFailures:
    async def test_store_failure_leaves_the_message_and_shows_in_health(
        self, start_vault: StartVault, sqs: Any, queue_url: str
    ) -> None:
        """A failed cascade counts in ``failed`` and ``last_error``; the message stays queued."""
        vault = await start_vault(slow(fail_on_document=1))
        entity_id, _ = await with_entity(vault, 1)
        send(sqs, queue_url, flat(entity_event(entity_id)))

        health = vault.poller.health
        await eventually(lambda: health.failed >= 1, "the failure to be counted",
                         within=EVENTUALLY_SECONDS)

        assert health.last_error is not None
        assert health.last_error["type"] == "StoreUnavailable"
        assert health.state is ActorState.RUNNING
        assert sum(queue_depth(sqs, queue_url)) == 1

    async def test_failure_mid_cascade_is_redelivered_and_finished(
        self, start_vault: StartVault, sqs: Any, queue_url: str
    ) -> None:
        """A batch failing half-way rolls back alone; the redelivery archives only the rest."""
        # Batches of two: the third document's events fail inside the second batch.
        vault = await start_vault(slow(batch_size=2, fail_on_document=3))
        entity_id, ids = await with_entity(vault, 5)
        event = entity_event(entity_id)
        send(sqs, queue_url, flat(event))
        health = vault.poller.health
        db = db_of(vault)

        await eventually(lambda: health.failed == 1, "the failing delivery",
                         within=EVENTUALLY_SECONDS)
        assert db.archived_ids(entity_id) == {str(i) for i in ids[:2]}
        assert db.processed(event["event_id"]) == 0
        db.assert_whole(entity_id)

        await until_drained(sqs, queue_url, "the redelivery to be acknowledged")
        assert db.statuses(entity_id) == {"archived": 5}
        assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        assert db.processed(event["event_id"]) == 1
        assert (health.processed, health.failed) == (1, 1)


class TestTwoPollers:
    async def test_two_pollers_on_one_queue_process_each_event_once(
        self, nursery: trio.Nursery, start_vault: StartVault, settings: Settings, sqs: Any,
        queue_url: str,
    ) -> None:
        """Another poller on the same queue shares the work; every event is processed once."""
        vault = await start_vault()
        second = EntityDeletionPoller(
            Mailbox("second_poller", 1), vault.archiver, settings,
            SqsQueue(aws_client(settings, "sqs"), queue_url),
        )
        nursery.start_soon(second.run)
        entities = [await with_entity(vault, 3) for _ in range(8)]
        events = [entity_event(entity_id) for entity_id, _ in entities]

        send(sqs, queue_url, *(flat(e) for e in events), *(enveloped(e) for e in events))

        await until_drained(sqs, queue_url, "every message to be deleted")
        second.mailbox.close()
        db = db_of(vault)
        for event, (entity_id, ids) in zip(events, entities, strict=True):
            assert db.processed(event["event_id"]) == 1
            assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        await eventually(
            lambda: vault.poller.health.processed + second.mailbox.health.processed == 16,
            "all sixteen messages to be counted",
        )


class TestStop:
    async def test_a_long_poll_in_flight_does_not_delay_the_stop(
        self, start_vault: StartVault, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a twenty-second long poll waiting on an empty queue, stopping takes moments."""
        polling_started = trio.Event()
        waits: list[int] = []
        receive = SqsQueue.receive

        def signalled_receive(
            queue: SqsQueue, max_messages: int, wait_seconds: int, visibility: int | None
        ) -> Any:
            waits.append(wait_seconds)
            trio.from_thread.run_sync(polling_started.set)
            return receive(queue, max_messages, wait_seconds, visibility)

        monkeypatch.setattr(SqsQueue, "receive", signalled_receive)
        vault = await start_vault(settings_=attrs.evolve(settings, document_consumer_wait_time=20))
        with trio.fail_after(EVENTUALLY_SECONDS):
            await polling_started.wait()
        assert waits == [20]

        began = trio.current_time()
        await vault.stop(5)

        assert trio.current_time() - began < 2
        assert vault.poller.health.state is ActorState.STOPPED

    async def test_held_messages_are_finished_and_the_rest_left(
        self, start_vault: StartVault, sqs: Any, queue_url: str, settings: Settings
    ) -> None:
        """Stopping mid-batch finishes what the poller holds; the rest stays in the queue."""
        vault = await start_vault(
            slow(batch_size=2, pause=0.05),
            attrs.evolve(settings, document_consumer_max_messages=2),
        )
        entities = [await with_entity(vault, 6) for _ in range(5)]
        events = [entity_event(entity_id) for entity_id, _ in entities]
        send(sqs, queue_url, *(flat(e) for e in events))
        health = vault.poller.health
        await eventually(lambda: health.in_flight > 0, "a cascade in flight",
                         within=EVENTUALLY_SECONDS)

        await vault.stop(5)

        db = db_of(vault)
        finished = [db.processed(e["event_id"]) == 1 for e in events]
        assert any(finished)
        for done, (entity_id, _) in zip(finished, entities, strict=True):
            assert db.statuses(entity_id) == ({"archived": 6} if done else {"uploaded": 6})
            db.assert_whole(entity_id)
        assert health.processed == sum(finished)
        await eventually(
            lambda: sum(queue_depth(sqs, queue_url)) == finished.count(False),
            "unfinished messages to remain queued",
            within=EVENTUALLY_SECONDS, interval=POLL_SECONDS, in_thread=True,
        )
