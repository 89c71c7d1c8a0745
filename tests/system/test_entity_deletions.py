"""Entity deletions end to end: real ``vault serve`` processes consuming moto's SQS."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.pg import PgDatabase
from tests.polling import eventually_sync
from tests.system.poller_support import (
    POLL_SECONDS,
    WAIT_SECONDS,
    VaultDb,
    consumer_env,
    entity_event,
    enveloped,
    flat,
    new_queue,
    queue_depth,
    send,
    sqs_client,
)
from tests.system.service import Server, StartServer


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return sqs_client(moto_endpoint)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return new_queue(sqs)


def poller_health(server: Server) -> dict[str, Any]:
    return server.actor_health("entity_deletion_poller")


def drained(sqs: Any, queue_url: str) -> bool:
    return queue_depth(sqs, queue_url) == (0, 0)


class TestConsuming:
    def test_flat_and_enveloped_events_archive_their_entities(
        self, start_server: StartServer, moto_endpoint: str, sqs: Any, queue_url: str
    ) -> None:
        """A plain event and an SNS notification each archive their entity and are deleted."""
        server = start_server(**consumer_env(moto_endpoint, queue_url))
        db = VaultDb.of_data_dir(server.data_dir)
        plain, wrapped = uuid.uuid4(), uuid.uuid4()
        db.insert_documents(plain, 3)
        db.insert_documents(wrapped, 2)

        send(sqs, queue_url, flat(entity_event(plain)), enveloped(entity_event(wrapped)))

        eventually_sync(
            lambda: drained(sqs, queue_url), "both messages to be deleted",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        assert db.statuses(plain) == {"archived": 3}
        assert db.statuses(wrapped) == {"archived": 2}
        db.assert_whole(plain)
        db.assert_whole(wrapped)

    def test_duplicate_delivery_is_processed_once(
        self, start_server: StartServer, moto_endpoint: str, sqs: Any, queue_url: str
    ) -> None:
        """The same event delivered three times leaves one processed row and one set of events."""
        server = start_server(**consumer_env(moto_endpoint, queue_url))
        db = VaultDb.of_data_dir(server.data_dir)
        entity_id = uuid.uuid4()
        ids = db.insert_documents(entity_id, 4)
        event = entity_event(entity_id)

        send(sqs, queue_url, flat(event), enveloped(event), flat(event))

        eventually_sync(
            lambda: drained(sqs, queue_url), "every copy to be deleted",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        assert db.processed(event["event_id"]) == 1
        assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        assert poller_health(server)["processed"] == 3

    def test_malformed_bodies_are_deleted_and_do_not_stop_the_poller(
        self, start_server: StartServer, moto_endpoint: str, sqs: Any, queue_url: str
    ) -> None:
        """Bodies that are not JSON or lack fields are dropped; a good event after them works."""
        server = start_server(**consumer_env(moto_endpoint, queue_url))
        db = VaultDb.of_data_dir(server.data_dir)
        entity_id = uuid.uuid4()
        db.insert_documents(entity_id, 1)

        send(sqs, queue_url, "{{{", '{"event_id": "x"}', flat(entity_event(entity_id)))

        eventually_sync(
            lambda: drained(sqs, queue_url), "every message to be deleted",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        assert db.statuses(entity_id) == {"archived": 1}
        health = poller_health(server)
        assert (health["state"], health["failed"]) == ("running", 0)


class TestFailures:
    def test_failure_mid_cascade_leaves_a_whole_prefix_and_is_redelivered(
        self, start_server: StartServer, moto_endpoint: str, sqs: Any, queue_url: str
    ) -> None:
        """A batch failing in the database rolls back alone; once fixed, the redelivery finishes."""
        server = start_server(**consumer_env(moto_endpoint, queue_url))
        db = VaultDb.of_data_dir(server.data_dir)
        entity_id = uuid.uuid4()
        ids = db.insert_documents(entity_id, 1200)
        # Document 700 sits in the second batch of 500: archiving it fails.
        db.query(
            "CREATE TRIGGER poison BEFORE UPDATE ON documents"
            f" WHEN NEW.id = '{ids[700]}' AND NEW.status = 'archived'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned document'); END"
        )
        event = entity_event(entity_id)
        send(sqs, queue_url, flat(event))

        eventually_sync(
            lambda: poller_health(server)["failed"] >= 1, "the failure to show",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        health = poller_health(server)
        assert health["last_error"]["type"] == "StoreUnavailable"
        assert db.statuses(entity_id) == {"archived": 500, "uploaded": 700}
        assert db.processed(event["event_id"]) == 0
        db.assert_whole(entity_id)
        assert sum(queue_depth(sqs, queue_url)) == 1

        db.query("DROP TRIGGER poison")
        # The cascade's outcome first: moto's approximate queue counts can read (0, 0)
        # for a moment while the redelivered message changes hands.
        eventually_sync(
            lambda: db.processed(event["event_id"]) == 1, "the redelivery to finish",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        eventually_sync(
            lambda: drained(sqs, queue_url), "the redelivery to be acknowledged",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        assert db.statuses(entity_id) == {"archived": 1200}
        assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        assert db.processed(event["event_id"]) == 1


class TestTwoServers:
    def test_two_servers_on_one_queue_process_each_event_once(
        self,
        start_server: StartServer,
        pg_database: PgDatabase,
        moto_endpoint: str,
        sqs: Any,
        queue_url: str,
    ) -> None:
        """Two replicas on one database and one queue: one row, one archive, one event set each."""
        pg_database.truncate_all(keep=("schema_version",))
        env = consumer_env(moto_endpoint, queue_url, DATABASE_URL=pg_database.url)
        first = start_server(**env)
        start_server(**env)
        db = VaultDb(postgres_url=pg_database.url)
        entities = [(entity_id, db.insert_documents(entity_id, 300))
                    for entity_id in (uuid.uuid4() for _ in range(6))]
        events = [entity_event(entity_id) for entity_id, _ in entities]

        send(sqs, queue_url, *(flat(e) for e in events), *(enveloped(e) for e in events))

        eventually_sync(
            lambda: drained(sqs, queue_url), "every message to be deleted",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        for event, (entity_id, ids) in zip(events, entities, strict=True):
            assert db.processed(event["event_id"]) == 1
            assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
        assert poller_health(first)["failed"] == 0


class TestShutdown:
    def test_sigterm_during_a_long_poll_exits_promptly(
        self, start_server: StartServer, moto_endpoint: str, queue_url: str
    ) -> None:
        """With a twenty-second long poll in flight, SIGTERM ends the process in moments."""
        server = start_server(
            **consumer_env(moto_endpoint, queue_url, DOCUMENT_CONSUMER_WAIT_TIME="20")
        )
        eventually_sync(
            lambda: poller_health(server)["state"] == "running", "the poller to run",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )

        began = time.monotonic()
        code = server.stop()

        assert code == 0
        assert time.monotonic() - began < 5

    def test_sigterm_with_a_batch_in_flight_leaves_nothing_half_done(
        self, start_server: StartServer, moto_endpoint: str, sqs: Any, queue_url: str
    ) -> None:
        """Each received message is processed and deleted, or redelivered and finished later."""
        env = consumer_env(moto_endpoint, queue_url, DOCUMENT_CONSUMER_MAX_MESSAGES="3")
        server = start_server(**env)
        db = VaultDb.of_data_dir(server.data_dir)
        entities = [(entity_id, db.insert_documents(entity_id, 800))
                    for entity_id in (uuid.uuid4() for _ in range(6))]
        events = [entity_event(entity_id) for entity_id, _ in entities]
        send(sqs, queue_url, *(flat(e) for e in events))
        eventually_sync(
            lambda: poller_health(server)["in_flight"] > 0, "a cascade in flight",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )

        assert server.stop() == 0

        finished = [db.processed(e["event_id"]) == 1 for e in events]
        assert any(finished)
        for done, (entity_id, _) in zip(finished, entities, strict=True):
            assert db.statuses(entity_id) == ({"archived": 800} if done else {"uploaded": 800})
            db.assert_whole(entity_id)
        assert sum(queue_depth(sqs, queue_url)) == finished.count(False)

        start_server(**env)
        eventually_sync(
            lambda: drained(sqs, queue_url), "the rest to be processed after a restart",
            within=WAIT_SECONDS, interval=POLL_SECONDS,
        )
        for event, (entity_id, ids) in zip(events, entities, strict=True):
            assert db.processed(event["event_id"]) == 1
            assert db.archive_announcements(entity_id) == {str(i): 2 for i in ids}
