"""Helpers for the entity-deletion tests: moto's SQS, event bodies, and the database behind.

``VaultDb`` reads and writes the service's tables around the service (the
SQLite file of a data folder, or a PostgreSQL URL), for setting up large
entities quickly and for checking that a cascade is whole.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import boto3
import psycopg

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
WAIT_SECONDS = 20.0
"""How long a bounded poll across processes waits before the test fails."""
POLL_SECONDS = 0.05
"""Pause between two checks of a bounded poll."""


def sqs_client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    ).client("sqs", endpoint_url=endpoint)


def new_queue(sqs: Any, *, visibility_timeout: int = 30) -> str:
    """A fresh queue of the test's own; its URL."""
    name = f"entity-deletions-{uuid.uuid4().hex[:12]}"
    answer = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)}
    )
    url: str = answer["QueueUrl"]
    return url


def consumer_env(endpoint: str, queue_url: str, **overrides: str) -> dict[str, str]:
    """What a server needs to consume ``queue_url`` on moto (short long-polls by default)."""
    env = {
        "DOCUMENT_VAULT_SQS_URL": queue_url,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "DOCUMENT_CONSUMER_WAIT_TIME": "1",
        "DOCUMENT_CONSUMER_VISIBILITY_TIMEOUT": "2",
        **CREDENTIALS,
    }
    env.update(overrides)
    return env


def entity_event(
    entity_id: uuid.UUID | None = None, *, event_id: str | None = None, entity_type: str = "issuer"
) -> dict[str, str]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "source": "entity_permissions_core",
        "action": "entity.deleted",
        "entity_id": str(entity_id or uuid.uuid4()),
        "entity_type": entity_type,
    }


def flat(event: dict[str, str]) -> str:
    return json.dumps(event)


def enveloped(event: dict[str, str]) -> str:
    """The event as SNS delivers it to a subscribed queue (raw delivery off)."""
    return json.dumps({
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": f"arn:aws:sns:{REGION}:123456789012:epr-document-events",
        "Message": json.dumps(event),
        "Timestamp": datetime.now(UTC).isoformat(),
        "SignatureVersion": "1",
    })


def send(sqs: Any, queue_url: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


_DOCUMENT_COLUMNS = (
    "id", "created_at", "updated_at", "entity_type", "entity_id", "document_type",
    "filename", "mime_type", "size_bytes", "storage_bucket", "storage_key",
    "sha256_hash", "status", "uploaded_by",
)  # fmt: skip
_BASE = datetime(2025, 10, 23, 12, 0, tzinfo=UTC)


@attrs.frozen
class VaultDb:
    """The service's database, reached around the service (``?`` placeholders)."""

    sqlite_path: Path | None = None
    postgres_url: str | None = None

    @classmethod
    def of_data_dir(cls, data_dir: Path) -> VaultDb:
        return cls(sqlite_path=data_dir / "vault.sqlite3")

    def query(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
            try:
                with conn:
                    return conn.execute(statement, params).fetchall()
            finally:
                conn.close()
        assert self.postgres_url is not None
        with psycopg.connect(self.postgres_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description is not None else []

    def insert_documents(
        self, entity_id: uuid.UUID, count: int, *, filename: str = "bulk.pdf"
    ) -> list[uuid.UUID]:
        """``count`` live documents of the entity, oldest first, straight into the table."""
        ids = [uuid.uuid4() for _ in range(count)]
        row = f"({', '.join('?' for _ in _DOCUMENT_COLUMNS)})"
        for start in range(0, count, 100):
            chunk = ids[start : start + 100]
            params: list[object] = []
            for offset, doc_id in enumerate(chunk, start):
                at = (_BASE + timedelta(microseconds=offset)).isoformat(timespec="microseconds")
                params += [
                    str(doc_id), at, at, "issuer", str(entity_id), "kyc", filename,
                    "application/pdf", 10, "local", f"documents/{doc_id}",
                    hashlib.sha256(doc_id.bytes).hexdigest(), "uploaded", str(uuid.uuid4()),
                ]  # fmt: skip
            self.query(
                f"INSERT INTO documents ({', '.join(_DOCUMENT_COLUMNS)})"
                f" VALUES {', '.join([row] * len(chunk))}",
                params,
            )
        return ids

    def statuses(self, entity_id: uuid.UUID) -> Counter[str]:
        rows = self.query(
            "SELECT status, count(*) FROM documents WHERE entity_id = ? GROUP BY status",
            (str(entity_id),),
        )
        return Counter({str(status): int(n) for status, n in rows})

    def processed(self, event_id: str) -> int:
        """How many ``processed_events`` rows the event has (0 or 1)."""
        ((count,),) = self.query(
            "SELECT count(*) FROM processed_events WHERE event_id = ?", (event_id,)
        )
        return int(count)

    def archive_announcements(self, entity_id: uuid.UUID) -> Counter[str]:
        """For each document of the entity, how many ``document.archived`` rows the outbox holds.

        Every archived document has two (the document event and the audit event).
        """
        docs = {
            str(doc_id)
            for (doc_id,) in self.query(
                "SELECT id FROM documents WHERE entity_id = ?", (str(entity_id),)
            )
        }
        counts: Counter[str] = Counter()
        for group_id, body in self.query("SELECT group_id, body FROM outbox"):
            if group_id not in docs:
                continue
            data = json.loads(body) if isinstance(body, str) else body
            if "document.archived" in (data.get("event_type"), data.get("action")):
                counts[group_id] += 1
        return counts

    def archived_ids(self, entity_id: uuid.UUID) -> set[str]:
        return {
            str(doc_id)
            for (doc_id,) in self.query(
                "SELECT id FROM documents WHERE entity_id = ? AND status = 'archived'",
                (str(entity_id),),
            )
        }

    def assert_whole(self, entity_id: uuid.UUID) -> None:
        """Every archived document of the entity has its two events; no other has any."""
        archived = self.archived_ids(entity_id)
        announcements = self.archive_announcements(entity_id)
        assert set(announcements) == archived
        assert set(announcements.values()) <= {2}
