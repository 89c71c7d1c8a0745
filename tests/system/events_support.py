"""What the event system tests need besides the server: destinations on moto's server,
inboxes to read back what the service published, a moto server a test can stop and
start again, and a proxy that can hold an SQS answer back.

moto's state lives in this test process, shared by every moto server it runs: a
queue created through one is there through another, and survives a restart. Names
are therefore unique per test, and "recreating" a destination after a restart is the
idempotent create a real deployment would run.

Waiting on another process has nothing to await: the tests poll, briefly and within
a bound (``tests.polling.eventually_sync``), or long-poll SQS (which answers as soon as
a message is there).
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import boto3
import httpx
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.polling import eventually_sync
from tests.system.service import Server, free_port, pdf, post_upload

MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}
ARRIVAL_TIMEOUT = 20.0
"""Longest a test waits for events to reach moto (publisher backoff included)."""
POLL_SECONDS = 0.05
"""Pause between two checks of a bounded poll."""


def aws(endpoint: str, service: str) -> Any:
    """A boto3 client on moto's server at ``endpoint``, for the test's own look behind."""
    return boto3.session.Session(
        aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_ENV["AWS_REGION"],
    ).client(service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


# ------------------------------------------------------------------ destinations


@attrs.frozen
class Received:
    """One message as a consumer sees it."""

    body: dict[str, Any]
    """The event (for SNS, the envelope's ``Message``, parsed)."""
    attributes: dict[str, str]
    """Message attributes, name -> string value (for SNS, the envelope's)."""
    group_id: str | None
    deduplication_id: str | None
    envelope: dict[str, Any] | None

    @property
    def event_id(self) -> str:
        return str(self.body.get("event_id") or self.body.get("alert_id"))


class Inbox:
    """Everything one queue has received so far; messages are deleted as they are read."""

    def __init__(self, sqs: Any, url: str, *, envelope: bool = False) -> None:
        self.sqs = sqs
        self.url = url
        self.envelope = envelope
        self.messages: list[Received] = []

    def receive(self, wait_seconds: int = 0) -> list[Received]:
        """Read what is there now (long-polling up to ``wait_seconds`` for a first message)."""
        answer = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
            MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
        )
        batch = [self._parse(message) for message in answer.get("Messages", [])]
        for message in answer.get("Messages", []):
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        self.messages.extend(batch)
        return batch

    def drain(self) -> list[Received]:
        """Read until the queue answers empty; every message so far."""
        while self.receive():
            pass
        return self.messages

    def until(self, count: int, timeout: float = ARRIVAL_TIMEOUT) -> list[Received]:
        """Every message so far, once there are at least ``count`` (each check long-polls
        the queue for a second, so there is no pause between checks)."""

        def enough() -> bool:
            if len(self.messages) < count:
                self.receive(wait_seconds=1)
            return len(self.messages) >= count

        eventually_sync(
            enough, f"{count} messages to reach {self.url}", within=timeout, interval=0,
            describe=lambda: f"{len(self.messages)} of {count} arrived",
        )
        return self.messages

    def by_id(self) -> Counter[str]:
        return Counter(message.event_id for message in self.messages)

    def _parse(self, message: dict[str, Any]) -> Received:
        system = message.get("Attributes", {})
        if self.envelope:
            envelope: dict[str, Any] = json.loads(message["Body"])
            return Received(
                body=json.loads(envelope["Message"]),
                attributes={
                    name: value["Value"]
                    for name, value in envelope.get("MessageAttributes", {}).items()
                },
                group_id=system.get("MessageGroupId"),
                deduplication_id=system.get("MessageDeduplicationId"),
                envelope=envelope,
            )
        return Received(
            body=json.loads(message["Body"]),
            attributes={
                name: value["StringValue"]
                for name, value in message.get("MessageAttributes", {}).items()
            },
            group_id=system.get("MessageGroupId"),
            deduplication_id=system.get("MessageDeduplicationId"),
            envelope=None,
        )


@attrs.frozen
class Destinations:
    """The service's three destinations on one moto server, and inboxes to read them."""

    endpoint: str
    name: str
    documents_url: str
    topic_arn: str
    alerts_url: str
    audit_url: str
    """A queue subscribed to the topic, raw delivery off: it receives SNS envelopes."""
    deletions_url: str
    """Where the EPR service would announce entity deletions."""

    @classmethod
    def create(cls, endpoint: str, name: str, *, fifo_documents: bool = False) -> Destinations:
        """Create (or find again: it is idempotent) every queue and the topic of ``name``."""
        sqs, sns = aws(endpoint, "sqs"), aws(endpoint, "sns")
        documents = (
            sqs.create_queue(
                QueueName=f"{name}-documents.fifo",
                Attributes={"FifoQueue": "true"},
            )
            if fifo_documents
            else sqs.create_queue(QueueName=f"{name}-documents")
        )["QueueUrl"]
        alerts = sqs.create_queue(QueueName=f"{name}-alerts")["QueueUrl"]
        deletions = sqs.create_queue(QueueName=f"{name}-entity-deletions")["QueueUrl"]
        audit = sqs.create_queue(QueueName=f"{name}-audit-subscriber")["QueueUrl"]
        topic = sns.create_topic(Name=f"{name}-audit")["TopicArn"]
        audit_arn = sqs.get_queue_attributes(QueueUrl=audit, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        subscribed = {
            s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        }
        if audit_arn not in subscribed:
            sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=audit_arn,
                Attributes={"RawMessageDelivery": "false"},
            )
        return cls(endpoint, name, documents, topic, alerts, audit, deletions)

    def recreate(self) -> Destinations:
        """Create them again, with the same names and URLs (after moto restarted)."""
        again = Destinations.create(
            self.endpoint, self.name, fifo_documents=self.documents_url.endswith(".fifo")
        )
        assert again == self, (again, self)
        return again

    def env(self, *, endpoint: str | None = None, documents_url: str | None = None,
            alerts: bool = True, audit: bool = True) -> dict[str, str]:
        """What the server needs to publish here (``endpoint`` overrides where it connects)."""
        env = {
            **MOTO_ENV,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "DOCUMENT_EVENTS_QUEUE_URL": documents_url or self.documents_url,
        }
        if audit:
            env["AUDIT_SNS_TOPIC_ARN"] = self.topic_arn
        if alerts:
            env["COMPLIANCE_ALERT_QUEUE_URL"] = self.alerts_url
        return env

    def inboxes(self) -> tuple[Inbox, Inbox, Inbox]:
        """Document events, audit envelopes, integrity alerts."""
        sqs = aws(self.endpoint, "sqs")
        return (
            Inbox(sqs, self.documents_url),
            Inbox(sqs, self.audit_url, envelope=True),
            Inbox(sqs, self.alerts_url),
        )


def unique_name() -> str:
    return f"vault-{uuid.uuid4().hex[:12]}"


class RestartableMoto:
    """A ``ThreadedMotoServer`` on a fixed loopback port that can be stopped and started
    again on that port; while stopped, connections to the port are refused."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self._server is None, "already running"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        assert self._server is not None, "not running"
        # ``stop`` ends serve_forever but leaves the socket listening: connections
        # would queue unanswered instead of being refused. Close it too.
        listener = self._server._server
        self._server.stop()
        if listener is not None:
            listener.server_close()
        self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None


# ------------------------------------------------------------------ holding proxy


class HoldingProxy:
    """An HTTP proxy to moto on loopback that forwards every request and its answer,
    except, while ``hold`` is set, the answer to an SQS ``SendMessageBatch``: that
    request reaches moto (the messages are sent), ``held`` is set, and the answer
    waits until ``release`` is set, then goes to a client that may no longer exist."""

    TARGET = "AmazonSQS.SendMessageBatch"

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def via(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{self.port}"))

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            upstream.request("POST", handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        if self.hold.is_set() and handler.headers.get("X-Amz-Target") == self.TARGET:
            self.held.set()
            self.release.wait(60)
        try:
            handler.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client is gone (killed while it waited)


# ------------------------------------------------------------------ the service


def upload(client: httpx.Client, headers: dict[str, str], entity: uuid.UUID,
           filename: str = "agreement.pdf") -> dict[str, Any]:
    """An upload that must be accepted; its ``Document``."""
    response = post_upload(client, headers, entity, pdf(4096), filename)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def publisher(server: Server, name: str = "audit_publisher") -> dict[str, Any]:
    """The publisher's health snapshot."""
    return server.actor_health(name)


def outbox_rows(data_dir: Path) -> list[dict[str, Any]]:
    """Every outbox row in the server's SQLite file, oldest first."""
    conn = sqlite3.connect(data_dir / "vault.sqlite3")
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM outbox ORDER BY id")]
    finally:
        conn.close()
