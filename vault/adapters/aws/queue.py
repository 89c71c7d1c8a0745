"""The inbound SQS queue the entity-deletion poller long-polls (boto3, blocking).

Called from the poller through worker threads. Errors: botocore's
exceptions become ``DependencyUnavailable`` here; nothing above sees them.
"""

from __future__ import annotations

from typing import Any

import attrs

from vault.adapters.aws.clients import map_aws_errors


@attrs.frozen
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


class SqsQueue:
    """One queue to long-poll and acknowledge."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int | None
    ) -> list[QueueMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_seconds,
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        with map_aws_errors("sqs receive"):
            answer = self.client.receive_message(**kwargs)
        return [
            QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""))
            for m in answer.get("Messages", [])
        ]

    def delete(self, receipt_handle: str) -> None:
        with map_aws_errors("sqs delete"):
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
