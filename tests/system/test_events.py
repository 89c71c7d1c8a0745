"""Events that are never lost: the real server publishing to SQS and SNS on moto's server.

Shapes are checked field for field against the contract's Events section, as a
consumer receives them. Then the ways an event could be lost or doubled: the
queue unreachable, the process killed between sending and marking, a SIGTERM
with a backlog.
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.polling import eventually_sync
from tests.system.events_support import (
    ARRIVAL_TIMEOUT,
    POLL_SECONDS,
    Destinations,
    HoldingProxy,
    Received,
    RestartableMoto,
    aws,
    outbox_rows,
    publisher,
    unique_name,
    upload,
)
from tests.system.service import Server, StartServer, actor, launch

pytestmark = pytest.mark.system

SOURCE = "document-vault-service"
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DOCUMENT_EVENT_KEYS = {"event_id", "event_type", "occurred_at", "payload"}
AUDIT_EVENT_KEYS = {
    "event_id", "source", "action", "actor_id", "actor_type", "entity_id", "entity_type",
    "correlation_id", "occurred_at", "details",
}


def event_time(moment: str) -> str:
    """A response timestamp as events write it: UTC, milliseconds, ``Z``."""
    parsed = datetime.fromisoformat(moment).astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


def assert_event_id(value: str) -> None:
    """A lowercase canonical version-4 UUID."""
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 4


def assert_occurred_within(value: str, window: tuple[datetime, datetime]) -> None:
    assert EVENT_TIME.match(value), value
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    start, end = window
    assert start.replace(microsecond=start.microsecond // 1000 * 1000) <= moment <= end


def one(messages: list[Received], **wanted: str) -> Received:
    """The one message whose body (or, for ``payload_document_id``, payload) matches."""
    found = [
        m for m in messages
        if all(
            (m.body.get("payload", {}).get("document_id") if key == "payload_document_id"
             else m.body.get(key)) == value
            for key, value in wanted.items()
        )
    ]
    assert len(found) == 1, (wanted, [m.body for m in messages])
    return found[0]


def metric_samples(server: Server) -> dict[tuple[str, str], float]:
    """Outbox samples by (name, destination)."""
    with server.client() as client:
        text = client.get("/metrics").text
    return {
        (sample.name, sample.labels["destination"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "destination" in sample.labels
    }


# ------------------------------------------------------------------ one life, every event


@attrs.frozen
class Step:
    """One request of the scripted life: its request id, and the wall-clock window around it."""

    request_id: str
    window: tuple[datetime, datetime]
    response: dict[str, Any]


@attrs.frozen
class Lifecycle:
    """What one server published while three documents went through every change."""

    destinations: Destinations
    actor_id: str
    steps: dict[str, Step]
    deletion_event_id: str
    documents: list[Received]
    audit: list[Received]
    alerts: list[Received]

    def doc(self, name: str) -> dict[str, Any]:
        return self.steps[f"upload {name}"].response


def _live(server: Server, destinations: Destinations) -> tuple[str, dict[str, Step], str]:
    """Drive the server: A uploaded, verified, downloaded, archived; B uploaded, tampered
    with and verified; C uploaded, then its entity deleted through the EPR queue."""
    headers = actor("admin")
    entity, other_entity = uuid.uuid4(), uuid.uuid4()
    steps: dict[str, Step] = {}

    with server.client() as client:
        def step(name: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            request_id = f"req-{name.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
            start = datetime.now(UTC)
            response = client.request(
                method, path, headers={**headers, "X-Request-ID": request_id}, **kwargs
            )
            end = datetime.now(UTC)
            assert response.status_code == 200, response.text
            steps[name] = Step(request_id, (start, end), response.json())
            return steps[name].response

        def upload_step(name: str, entity_id: uuid.UUID) -> dict[str, Any]:
            request_id = f"req-upload-{name}-{uuid.uuid4().hex[:8]}"
            start = datetime.now(UTC)
            doc = upload(client, {**headers, "X-Request-ID": request_id}, entity_id,
                         filename=f"{name}.pdf")
            steps[f"upload {name}"] = Step(request_id, (start, datetime.now(UTC)), doc)
            return doc

        a = upload_step("a", entity)
        step("verify a", "POST", "/api/v1/documents/verify", json={"document_id": a["id"]})
        step("download a", "GET", f"/api/v1/documents/{a['id']}/download",
             params={"expires_in": "600"})
        step("archive a", "DELETE", f"/api/v1/documents/{a['id']}")

        b = upload_step("b", entity)
        stored = server.data_dir / "blobs" / "objects" / b["storage_key"]
        raw = bytearray(stored.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        stored.write_bytes(bytes(raw))
        step("verify b", "POST", "/api/v1/documents/verify", json={"document_id": b["id"]})

        c = upload_step("c", other_entity)
        deletion_event_id = str(uuid.uuid4())
        aws(destinations.endpoint, "sqs").send_message(
            QueueUrl=destinations.deletions_url,
            MessageBody=json.dumps({
                "event_id": deletion_event_id, "source": "entity_permissions_core",
                "action": "entity.deleted", "entity_id": str(other_entity),
                "entity_type": "issuer",
            }),
        )
        start = datetime.now(UTC)

        def cascaded() -> dict[str, Any] | None:
            listed: list[dict[str, Any]] = client.get(
                f"/api/v1/documents/{other_entity}", headers=headers,
                params={"include_archived": "true"},
            ).json()["documents"]
            return listed[0] if [d["status"] for d in listed] == ["archived"] else None

        archived = eventually_sync(
            cascaded, "the entity deletion to archive document C",
            within=ARRIVAL_TIMEOUT, interval=POLL_SECONDS,
        )
        assert archived["id"] == c["id"]
        steps["cascade c"] = Step(deletion_event_id, (start, datetime.now(UTC)), archived)
    return headers["X-Actor-Id"], steps, deletion_event_id


@pytest.fixture(scope="class")
def lifecycle(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    """One server on moto, taken through every kind of change, then stopped; what each
    queue received, read after the process exited."""
    folder = tmp_path_factory.mktemp("events")
    destinations = Destinations.create(moto_endpoint, unique_name())
    server = launch(folder / "data", folder / "server.log", {
        **destinations.env(),
        "DOCUMENT_VAULT_SQS_URL": destinations.deletions_url,
        "DOCUMENT_CONSUMER_WAIT_TIME": "1",
    })
    try:
        actor_id, steps, deletion_event_id = _live(server, destinations)
        documents, audit, alerts = destinations.inboxes()
        documents.until(7)
        audit.until(9)
        alerts.until(1)
        assert server.stop() == 0, server.log_tail()
        yield Lifecycle(
            destinations, actor_id, steps, deletion_event_id,
            documents.drain(), audit.drain(), alerts.drain(),
        )
    finally:
        if server.running():
            server.stop()
        print(f"--- {server.log_path.name} ---\n{server.log_tail()}")


class TestEveryEventType:
    def test_every_event_arrives_exactly_once(self, lifecycle: Lifecycle) -> None:
        """Seven document events, nine audit events (the mismatch froze its entity) and one
        alert, none twice."""
        for inbox, count in ((lifecycle.documents, 7), (lifecycle.audit, 9),
                             (lifecycle.alerts, 1)):
            ids = [m.event_id for m in inbox]
            assert len(ids) == count
            assert len(set(ids)) == count

    def test_document_uploaded(self, lifecycle: Lifecycle) -> None:
        """``document.uploaded`` carries the document's payload with status uploaded."""
        doc = lifecycle.doc("a")
        message = one(lifecycle.documents, event_type="document.uploaded",
                      payload_document_id=doc["id"])
        assert message.body.keys() == DOCUMENT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert message.body["occurred_at"] == event_time(doc["created_at"])
        assert message.body["payload"] == {
            "document_id": doc["id"], "entity_type": "issuer", "entity_id": doc["entity_id"],
            "sha256_hash": doc["sha256_hash"], "status": "uploaded",
        }
        assert message.attributes == {"event_type": "document.uploaded"}
        assert (message.group_id, message.deduplication_id) == (None, None)

    def test_document_verified(self, lifecycle: Lifecycle) -> None:
        """``document.verified`` carries the document's payload, no status."""
        doc, verify = lifecycle.doc("a"), lifecycle.steps["verify a"]
        message = one(lifecycle.documents, event_type="document.verified")
        assert message.body.keys() == DOCUMENT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert message.body["occurred_at"] == event_time(verify.response["hash_verified_at"])
        assert message.body["payload"] == {
            "document_id": doc["id"], "entity_type": "issuer", "entity_id": doc["entity_id"],
            "sha256_hash": doc["sha256_hash"],
        }
        assert message.attributes == {"event_type": "document.verified"}

    def test_document_mismatch(self, lifecycle: Lifecycle) -> None:
        """``document.mismatch`` names both hashes; nothing readable means null."""
        doc, verify = lifecycle.doc("b"), lifecycle.steps["verify b"]
        assert verify.response["status"] == "mismatch"
        message = one(lifecycle.documents, event_type="document.mismatch")
        assert message.body.keys() == DOCUMENT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert_occurred_within(message.body["occurred_at"], verify.window)
        assert message.body["payload"] == {
            "document_id": doc["id"], "entity_id": doc["entity_id"],
            "expected_hash": doc["sha256_hash"], "calculated_hash": None,
        }
        assert message.attributes == {"event_type": "document.mismatch"}

    def test_document_archived(self, lifecycle: Lifecycle) -> None:
        """``document.archived`` carries the document's payload at the archive time."""
        doc, archive = lifecycle.doc("a"), lifecycle.steps["archive a"]
        message = one(lifecycle.documents, event_type="document.archived",
                      payload_document_id=doc["id"])
        assert message.body.keys() == DOCUMENT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert message.body["occurred_at"] == event_time(archive.response["archived_at"])
        assert message.body["payload"] == {
            "document_id": doc["id"], "entity_type": "issuer", "entity_id": doc["entity_id"],
            "sha256_hash": doc["sha256_hash"],
        }
        assert message.attributes == {"event_type": "document.archived"}

    def test_cascade_archive_document_event(self, lifecycle: Lifecycle) -> None:
        """The entity-deletion cascade announces ``document.archived`` like an archive."""
        doc, cascade = lifecycle.doc("c"), lifecycle.steps["cascade c"]
        message = one(lifecycle.documents, event_type="document.archived",
                      payload_document_id=doc["id"])
        assert message.body.keys() == DOCUMENT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert message.body["occurred_at"] == event_time(cascade.response["archived_at"])
        assert message.body["payload"] == {
            "document_id": doc["id"], "entity_type": "issuer", "entity_id": doc["entity_id"],
            "sha256_hash": doc["sha256_hash"],
        }
        assert message.attributes == {"event_type": "document.archived"}

    def _audit(self, lifecycle: Lifecycle, action: str, doc: dict[str, Any]) -> Received:
        message = one(lifecycle.audit, action=action, entity_id=doc["id"])
        assert message.body.keys() == AUDIT_EVENT_KEYS
        assert_event_id(message.body["event_id"])
        assert message.body["source"] == SOURCE
        assert message.body["entity_type"] == "document"
        assert message.attributes == {"action": action, "source": SOURCE}
        assert message.envelope is not None
        assert message.envelope["Type"] == "Notification"
        assert message.envelope["TopicArn"] == lifecycle.destinations.topic_arn
        return message

    def _by_user(self, lifecycle: Lifecycle, message: Received, step: Step) -> None:
        assert message.body["actor_id"] == lifecycle.actor_id
        assert message.body["actor_type"] == "user"
        assert message.body["correlation_id"] == step.request_id

    def test_audit_uploaded(self, lifecycle: Lifecycle) -> None:
        """The upload's audit event names the user, the request and the stored file."""
        doc, upload_step = lifecycle.doc("a"), lifecycle.steps["upload a"]
        message = self._audit(lifecycle, "document.uploaded", doc)
        self._by_user(lifecycle, message, upload_step)
        assert message.body["occurred_at"] == event_time(doc["created_at"])
        assert message.body["details"] == {
            "filename": "a.pdf", "sha256_hash": doc["sha256_hash"],
            "on_chain_reference": doc["on_chain_reference"], "entity_type": "issuer",
            "entity_id": doc["entity_id"], "document_type": "kyc",
            "size_bytes": doc["size_bytes"], "mime_type": "application/pdf",
        }

    def test_audit_verified(self, lifecycle: Lifecycle) -> None:
        """The verification's audit event carries the recorded and the calculated hash."""
        doc, verify = lifecycle.doc("a"), lifecycle.steps["verify a"]
        message = self._audit(lifecycle, "document.verified", doc)
        self._by_user(lifecycle, message, verify)
        assert message.body["occurred_at"] == event_time(verify.response["hash_verified_at"])
        assert message.body["details"] == {
            "sha256_hash": doc["sha256_hash"], "on_chain_reference": doc["on_chain_reference"],
            "calculated_hash": doc["sha256_hash"],
        }

    def test_audit_mismatch(self, lifecycle: Lifecycle) -> None:
        """The mismatch's audit event carries the expected and the calculated hash."""
        doc, verify = lifecycle.doc("b"), lifecycle.steps["verify b"]
        message = self._audit(lifecycle, "document.mismatch", doc)
        self._by_user(lifecycle, message, verify)
        assert_occurred_within(message.body["occurred_at"], verify.window)
        assert message.body["details"] == {
            "expected_hash": doc["sha256_hash"], "calculated_hash": None,
            "on_chain_reference": doc["on_chain_reference"], "filename": "b.pdf",
        }

    def test_audit_download_url_issued(self, lifecycle: Lifecycle) -> None:
        """Issuing a download URL is audited with its lifetime."""
        doc, download = lifecycle.doc("a"), lifecycle.steps["download a"]
        assert download.response["expires_in_seconds"] == 600
        message = self._audit(lifecycle, "document.download_url_issued", doc)
        self._by_user(lifecycle, message, download)
        assert_occurred_within(message.body["occurred_at"], download.window)
        assert message.body["details"] == {"expires_in_seconds": 600, "filename": "a.pdf"}

    def test_audit_archived(self, lifecycle: Lifecycle) -> None:
        """The archive's audit event names the user and the file."""
        doc, archive = lifecycle.doc("a"), lifecycle.steps["archive a"]
        message = self._audit(lifecycle, "document.archived", doc)
        self._by_user(lifecycle, message, archive)
        assert message.body["occurred_at"] == event_time(archive.response["archived_at"])
        assert message.body["details"] == {"filename": "a.pdf", "sha256_hash": doc["sha256_hash"]}

    def test_audit_cascade_archived(self, lifecycle: Lifecycle) -> None:
        """The cascade's audit event is the system's, correlated with the deletion event."""
        doc, cascade = lifecycle.doc("c"), lifecycle.steps["cascade c"]
        message = self._audit(lifecycle, "document.archived", doc)
        assert message.body["actor_id"] is None
        assert message.body["actor_type"] == "system"
        assert message.body["correlation_id"] == lifecycle.deletion_event_id
        assert message.body["occurred_at"] == event_time(cascade.response["archived_at"])
        assert message.body["details"] == {
            "filename": "c.pdf", "sha256_hash": doc["sha256_hash"], "reason": "entity_deleted",
        }

    def test_integrity_alert(self, lifecycle: Lifecycle) -> None:
        """The mismatch raises one CRITICAL alert for the compliance queue."""
        doc, verify = lifecycle.doc("b"), lifecycle.steps["verify b"]
        (message,) = lifecycle.alerts
        assert_event_id(message.body["alert_id"])
        assert_occurred_within(message.body["detected_at"], verify.window)
        assert message.body == {
            "alert_id": message.body["alert_id"], "alert_type": "integrity_violation",
            "severity": "CRITICAL", "document_id": doc["id"], "filename": "b.pdf",
            "entity_id": doc["entity_id"], "entity_type": "issuer",
            "expected_hash": doc["sha256_hash"], "calculated_hash": None,
            "verified_by": lifecycle.actor_id, "recommended_action": "FREEZE_ENTITY",
            "detected_at": message.body["detected_at"],
            "incident_id": message.body["incident_id"],
        }
        assert_event_id(message.body["incident_id"])
        assert message.attributes == {"alert_type": "integrity_violation", "severity": "CRITICAL"}

    def test_audit_entity_frozen(self, lifecycle: Lifecycle) -> None:
        """The mismatch froze its entity: the system's entity.frozen names the incident."""
        doc, verify = lifecycle.doc("b"), lifecycle.steps["verify b"]
        message = one(lifecycle.audit, action="entity.frozen", entity_id=doc["entity_id"])
        (alert,) = lifecycle.alerts
        assert message.body["entity_type"] == "entity"
        assert (message.body["actor_id"], message.body["actor_type"]) == (None, "system")
        assert_occurred_within(message.body["occurred_at"], verify.window)
        assert message.body["details"] == {
            "reason": "integrity mismatch", "incident_id": alert.body["incident_id"],
        }

    def test_mismatch_events_share_their_moment(self, lifecycle: Lifecycle) -> None:
        """The mismatch's document event, audit event and alert tell of one moment."""
        doc = lifecycle.doc("b")
        document = one(lifecycle.documents, event_type="document.mismatch")
        audit = one(lifecycle.audit, action="document.mismatch", entity_id=doc["id"])
        (alert,) = lifecycle.alerts
        assert (document.body["occurred_at"] == audit.body["occurred_at"]
                == alert.body["detected_at"])


class TestFifoQueue:
    def test_group_is_the_document_and_deduplication_the_event(
        self, start_server: StartServer, moto_endpoint: str
    ) -> None:
        """On a FIFO queue each document event is grouped by its document and deduplicated
        on its event id, in the order of the changes."""
        destinations = Destinations.create(moto_endpoint, unique_name(), fifo_documents=True)
        server = start_server(**destinations.env(alerts=False, audit=False))
        headers = actor("admin")
        with server.client() as client:
            doc = upload(client, headers, uuid.uuid4())
            verified = client.post("/api/v1/documents/verify", headers=headers,
                                   json={"document_id": doc["id"]})
            assert verified.status_code == 200, verified.text
        documents, _, _ = destinations.inboxes()
        messages = documents.until(2)
        assert [m.body["event_type"] for m in messages] == [
            "document.uploaded", "document.verified",
        ]
        for message in messages:
            assert message.group_id == doc["id"]
            assert message.deduplication_id == message.body["event_id"]


# ------------------------------------------------------------------ never lost, never doubled


@pytest.fixture
def own_moto() -> Iterator[RestartableMoto]:
    """A moto server of this test's own, running, that the test may stop and start."""
    moto = RestartableMoto()
    moto.start()
    yield moto
    if moto.running:
        moto.stop()


def _wait_for_backlog(server: Server, at_least: int) -> dict[str, Any]:
    """The audit publisher's snapshot once both its destinations hold ``at_least`` pending
    rows and it has reported a failed delivery."""

    def shows() -> dict[str, Any] | None:
        snapshot = publisher(server)
        backlog = snapshot.get("backlog", {})
        pending = [backlog.get(name, {}).get("pending", 0)
                   for name in ("document_events", "audit_events")]
        if min(pending) >= at_least and snapshot["last_error"] is not None:
            return snapshot
        return None

    return eventually_sync(
        shows, "the publisher's health to show the backlog and the failure",
        within=ARRIVAL_TIMEOUT, interval=POLL_SECONDS,
    )


def _outage(
    start_server: StartServer, moto: RestartableMoto, uploads: int, **env: str
) -> tuple[Server, Destinations, dict[str, Any]]:
    """A server publishing to ``moto``; moto stopped; ``uploads`` accepted meanwhile."""
    destinations = Destinations.create(moto.endpoint, unique_name())
    server = start_server(**destinations.env(), **env)
    moto.stop()
    headers = actor("admin")
    with server.client() as client:
        for _ in range(uploads):
            upload(client, headers, uuid.uuid4())
    return server, destinations, _wait_for_backlog(server, uploads)


def _event_ids(data_dir: Path, destination: str) -> list[str]:
    return [row["event_id"] for row in outbox_rows(data_dir) if row["destination"] == destination]


class TestQueueUnreachable:
    def test_requests_succeed_and_health_shows_the_backlog(
        self, start_server: StartServer, own_moto: RestartableMoto
    ) -> None:
        """With moto stopped, uploads still answer 201 and the publisher's health and the
        metrics show the events waiting and the last delivery error."""
        server, _, snapshot = _outage(start_server, own_moto, uploads=2)
        assert snapshot["state"] == "running"
        assert snapshot["last_error"]["type"] == "DeliveryFailed"
        assert snapshot["last_error"]["message"].startswith(("sqs:", "sns:"))
        for name in ("document_events", "audit_events"):
            assert snapshot["backlog"][name]["pending"] == 2
            assert snapshot["backlog"][name]["delivered"] == 0
        samples = metric_samples(server)
        assert samples[("vault_outbox_pending", "document_events")] == 2
        assert samples[("vault_outbox_failed_total", "document_events")] >= 1
        assert samples[("vault_outbox_oldest_pending_age_seconds", "document_events")] >= 0
        with server.client() as client:
            assert client.get("/healthz").status_code == 200

    def test_every_event_arrives_once_when_the_queue_is_back(
        self, start_server: StartServer, own_moto: RestartableMoto
    ) -> None:
        """Once moto answers again on its port, every event that waited is delivered, and
        none twice."""
        server, destinations, _ = _outage(start_server, own_moto, uploads=3)
        own_moto.start()
        destinations.recreate()
        documents, audit, _ = destinations.inboxes()
        documents.until(3)
        audit.until(3)

        def all_delivered() -> bool:
            backlog = publisher(server)["backlog"]
            return all(backlog[name]["pending"] == 0 for name in ("document_events",
                                                                  "audit_events"))

        eventually_sync(
            all_delivered, "the backlog to empty",
            within=ARRIVAL_TIMEOUT, interval=POLL_SECONDS,
        )
        documents.drain()
        audit.drain()
        assert documents.by_id() == dict.fromkeys(
            _event_ids(server.data_dir, "document_events"), 1)
        assert audit.by_id() == dict.fromkeys(_event_ids(server.data_dir, "audit_events"), 1)


class TestCrash:
    def test_an_event_sent_but_not_marked_is_sent_again_with_its_id(
        self, start_server: StartServer, moto_endpoint: str
    ) -> None:
        """Killed (SIGKILL) while moto's answer to a send is held back, the process never
        marks the event delivered; restarted on its data, it sends the event again with
        the same event_id once the dead process's lease (OUTBOX_LEASE_SECONDS) ends,
        with no edit of the database."""
        destinations = Destinations.create(moto_endpoint, unique_name())
        documents, _, _ = destinations.inboxes()
        with HoldingProxy(moto_endpoint) as proxy:
            env = destinations.env(
                endpoint=proxy.endpoint, documents_url=proxy.via(destinations.documents_url),
                alerts=False, audit=False,
            )
            env["OUTBOX_LEASE_SECONDS"] = "2"
            first = start_server(**env)
            proxy.hold.set()
            with first.client() as client:
                doc = upload(client, actor("admin"), uuid.uuid4())
            assert proxy.held.wait(20), first.log_tail()
            first.process.send_signal(signal.SIGKILL)
            assert first.process.wait(10) == -signal.SIGKILL
            proxy.hold.clear()
            proxy.release.set()

            (sent,) = documents.until(1)
            assert sent.body["payload"]["document_id"] == doc["id"]
            (row,) = [r for r in outbox_rows(first.data_dir) if r["event_id"] == sent.event_id]
            assert row["delivered_at"] is None
            assert row["leased_until"] is not None

            second = start_server(data=first.data_dir, **env)
            again = documents.until(2)[1]
            assert again.event_id == sent.event_id
            assert again.body == sent.body

            def marked() -> bool:
                rows = outbox_rows(second.data_dir)
                return all(r["delivered_at"] is not None for r in rows
                           if r["event_id"] == sent.event_id)

            eventually_sync(
                marked, "the resent event to be marked delivered",
                within=ARRIVAL_TIMEOUT, interval=POLL_SECONDS,
            )
            assert second.stop() == 0
        assert documents.drain() == [sent, again]


def _backing_off(server: Server, sinks: tuple[str, ...], at_least: float) -> None:
    """Wait until each sink's latest failure put it in a backoff of ``at_least`` seconds."""

    def latest_backoffs() -> bool:
        latest: dict[str, float] = {}
        for line in server.log_lines():
            if line.get("event") == "delivery_failed":
                latest[line["sink"]] = line["retry_in_seconds"]
        return all(latest.get(sink, 0.0) >= at_least for sink in sinks)

    eventually_sync(
        latest_backoffs, f"{', '.join(sinks)} backing off for {at_least} s",
        within=ARRIVAL_TIMEOUT, interval=POLL_SECONDS,
    )


def _logged_at(server: Server, event: str) -> datetime:
    (line,) = [line for line in server.log_lines() if line.get("event") == event]
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))


class TestSigterm:
    GRACE = 10.0

    def test_publishers_flush_a_backlog_before_exiting(
        self, start_server: StartServer, own_moto: RestartableMoto
    ) -> None:
        """Events held back while moto was down are delivered by the shutdown itself: with
        moto back and SIGTERM sent at once, while the publisher still waits out its
        backoff, they are there when the process has exited 0, within the grace period."""
        server, destinations, _ = _outage(
            start_server, own_moto, uploads=2, SHUTDOWN_GRACE_SECONDS=str(self.GRACE)
        )
        _backing_off(server, ("sqs:document_events", "sns:audit_events"), at_least=1.0)
        own_moto.start()
        destinations.recreate()
        server.terminate()
        started = time.monotonic()
        assert server.wait(self.GRACE + 5) == 0
        assert time.monotonic() - started < self.GRACE
        documents, audit, _ = destinations.inboxes()
        documents.drain()
        audit.drain()
        assert documents.by_id() == dict.fromkeys(
            _event_ids(server.data_dir, "document_events"), 1)
        assert audit.by_id() == dict.fromkeys(_event_ids(server.data_dir, "audit_events"), 1)
        assert len(documents.messages) == len(audit.messages) == 2
        shutdown = _logged_at(server, "shutdown_started")
        for row in outbox_rows(server.data_dir):
            assert row["delivered_at"] is not None
            assert datetime.fromisoformat(row["delivered_at"]) >= shutdown
