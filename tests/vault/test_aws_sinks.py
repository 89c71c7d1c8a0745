"""The SQS and SNS sinks against moto's server on loopback."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import test_settings
from vault.aws_sinks import SnsSink, SqsSink
from vault.errors import DependencyUnavailable
from vault.events import Destination, OutboxEvent, OutboxRow
from vault.models import utcnow
from vault.sqs import aws_client


def _row(row_id: int, destination: Destination, attributes: dict[str, str]) -> OutboxRow:
    event_id = uuid.uuid4()
    event = OutboxEvent(
        event_id=event_id,
        destination=destination,
        body={"event_id": str(event_id), "n": row_id},
        attributes=attributes,
        group_id="doc-1",
        created_at=utcnow(),
    )
    return OutboxRow(id=row_id, event=event, attempts=0)


@pytest.fixture
def sqs(aws_env: str, tmp_path: Path) -> Any:
    return aws_client(test_settings(tmp_path, aws_endpoint_url=aws_env), "sqs")


@pytest.fixture
def sns(aws_env: str, tmp_path: Path) -> Any:
    return aws_client(test_settings(tmp_path, aws_endpoint_url=aws_env), "sns")


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        )
        batch = answer.get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


class TestSqsSink:
    def test_every_row_arrives_with_its_body_and_attributes(self, sqs: Any) -> None:
        """Twelve rows (more than one batch) arrive once each, attributes intact."""
        url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex}")["QueueUrl"]
        rows = [_row(i, Destination.DOCUMENT_EVENTS, {"event_type": "document.uploaded"})
                for i in range(1, 13)]
        deliveries = SqsSink("sqs:test", sqs, url).send(rows)
        assert sorted(d.row_id for d in deliveries if d.ok) == list(range(1, 13))
        messages = _drain(sqs, url)
        assert sorted(json.loads(m["Body"])["n"] for m in messages) == list(range(1, 13))
        assert all(
            m["MessageAttributes"]["event_type"]["StringValue"] == "document.uploaded"
            for m in messages
        )

    def test_fifo_queue_gets_group_and_deduplication_ids(self, sqs: Any) -> None:
        """On a FIFO queue, a row sent twice is delivered once (deduplicated on event_id)."""
        url = sqs.create_queue(
            QueueName=f"events-{uuid.uuid4().hex[:20]}.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        row = _row(1, Destination.DOCUMENT_EVENTS, {"event_type": "document.verified"})
        sink = SqsSink("sqs:fifo", sqs, url)
        assert sink.send([row])[0].ok
        assert sink.send([row])[0].ok
        assert len(_drain(sqs, url)) == 1

    def test_unreachable_queue_raises_dependency_unavailable(self, tmp_path: Path,
                                                            aws_env: str) -> None:
        """A queue nobody answers for is a DependencyUnavailable, not a botocore error."""
        client = aws_client(test_settings(tmp_path, aws_endpoint_url="http://127.0.0.1:9"), "sqs")
        sink = SqsSink("sqs:down", client, "http://127.0.0.1:9/123456789012/nowhere")
        with pytest.raises(DependencyUnavailable):
            sink.send([_row(1, Destination.DOCUMENT_EVENTS, {"event_type": "x"})])


class TestSnsSink:
    def test_audit_events_reach_a_subscribed_queue(self, sns: Any, sqs: Any) -> None:
        """A published audit event arrives at a queue subscribed to the topic, attributes too."""
        topic = sns.create_topic(Name=f"audit-{uuid.uuid4().hex}")["TopicArn"]
        url = sqs.create_queue(QueueName=f"audit-{uuid.uuid4().hex}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        row = _row(7, Destination.AUDIT_EVENTS,
                   {"action": "document.uploaded", "source": "document-vault-service"})
        deliveries = SnsSink("sns:test", sns, topic).send([row])
        assert [d.ok for d in deliveries] == [True]
        (message,) = _drain(sqs, url)
        envelope = json.loads(message["Body"])
        assert json.loads(envelope["Message"]) == row.event.body
        assert envelope["MessageAttributes"]["action"]["Value"] == "document.uploaded"
        assert envelope["MessageAttributes"]["source"]["Value"] == "document-vault-service"
