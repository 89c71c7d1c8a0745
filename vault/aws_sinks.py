"""Queue and topic sinks: document events and alerts to SQS, audit events to SNS.

Both send in batches of ten (the APIs' limit). A whole call that fails
(endpoint unreachable, throttled, credentials refused) raises
``DependencyUnavailable``: every row of the batch is retried later. An
entry the service rejects as the sender's fault (too large, malformed) is
reported permanent, so the publisher parks it instead of retrying forever.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vault.events import OutboxRow
from vault.ports import Delivery
from vault.sqs import map_aws_errors

BATCH_LIMIT = 10


def _attributes(row: OutboxRow) -> dict[str, dict[str, str]]:
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in row.event.attributes.items()
    }


def _body(row: OutboxRow) -> str:
    return json.dumps(row.event.body, separators=(",", ":"))


def _settle(rows: Sequence[OutboxRow], answer: dict[str, Any]) -> list[Delivery]:
    """Match a batch answer's Successful/Failed entries back to rows (Id = row id)."""
    by_id = {str(row.id): row for row in rows}
    deliveries = [Delivery(int(entry["Id"]), ok=True) for entry in answer.get("Successful", [])]
    for entry in answer.get("Failed", []):
        deliveries.append(
            Delivery(
                int(entry["Id"]),
                ok=False,
                permanent=bool(entry.get("SenderFault")),
                error=f"{entry.get('Code')}: {entry.get('Message')}",
            )
        )
    answered = {str(d.row_id) for d in deliveries}
    for missing in by_id.keys() - answered:
        deliveries.append(Delivery(int(missing), ok=False, error="no answer for this entry"))
    return deliveries


class SqsSink:
    """Sends rows to one SQS queue; FIFO queues get a group and a deduplication id."""

    def __init__(self, name: str, client: Any, queue_url: str) -> None:
        self.name = name
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            batch = rows[start:start + BATCH_LIMIT]
            entries = []
            for row in batch:
                entry: dict[str, Any] = {
                    "Id": str(row.id),
                    "MessageBody": _body(row),
                    "MessageAttributes": _attributes(row),
                }
                if self.fifo:
                    entry["MessageGroupId"] = row.event.group_id or str(row.event.event_id)
                    entry["MessageDeduplicationId"] = str(row.event.event_id)
                entries.append(entry)
            with map_aws_errors(f"sqs send to {self.name}"):
                answer = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            deliveries.extend(_settle(batch, answer))
        return deliveries


class SnsSink:
    """Publishes rows to one SNS topic."""

    def __init__(self, name: str, client: Any, topic_arn: str) -> None:
        self.name = name
        self.client = client
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            batch = rows[start:start + BATCH_LIMIT]
            entries = []
            for row in batch:
                entry: dict[str, Any] = {
                    "Id": str(row.id),
                    "Message": _body(row),
                    "MessageAttributes": _attributes(row),
                }
                if self.fifo:
                    entry["MessageGroupId"] = row.event.group_id or str(row.event.event_id)
                    entry["MessageDeduplicationId"] = str(row.event.event_id)
                entries.append(entry)
            with map_aws_errors(f"sns publish to {self.name}"):
                answer = self.client.publish_batch(
                    TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                )
            deliveries.extend(_settle(batch, answer))
        return deliveries
