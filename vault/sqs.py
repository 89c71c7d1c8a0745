"""SQS adapters (boto3, blocking; called from actors through worker threads).

Errors: botocore's exceptions are mapped here, at the boundary, to
``DependencyUnavailable``; nothing above this module sees them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import attrs
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vault.config import Settings
from vault.errors import DependencyUnavailable


def aws_client(
    settings: Settings, service: str, *, read_timeout: float = 30.0, attempts: int = 3
) -> Any:
    """A boto3 client honouring the region, the keys and the endpoint overrides."""
    endpoint = settings.aws_endpoint_url
    if service == "s3" and settings.aws_s3_endpoint_url:
        endpoint = settings.aws_s3_endpoint_url
    session = boto3.session.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region or "us-east-1",
    )
    config = Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        # Presigned download URLs must be SigV4 (botocore signs V2 in us-east-1).
        signature_version="s3v4" if service == "s3" else None,
    )
    return session.client(service, endpoint_url=endpoint, config=config)


@contextmanager
def map_aws_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable(f"{what}: {exc}") from exc


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


@attrs.frozen
class EntityDeleted:
    event_id: str
    source: str
    action: str
    entity_id: UUID
    entity_type: str


class Unprocessable(ValueError):
    """A message body that can never be processed (not JSON, fields missing)."""


def parse_entity_event(body: str) -> EntityDeleted:
    """The event itself, or the event inside an SNS envelope."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification":
            data = json.loads(data["Message"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Unprocessable(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Unprocessable("body is not a JSON object")
    missing = [k for k in ("event_id", "action", "entity_id", "entity_type") if not data.get(k)]
    if missing:
        raise Unprocessable(f"missing fields: {', '.join(missing)}")
    try:
        entity_id = UUID(str(data["entity_id"]))
    except ValueError:
        raise Unprocessable(f"entity_id is not a UUID: {data['entity_id']!r}") from None
    return EntityDeleted(
        event_id=str(data["event_id"]),
        source=str(data.get("source") or "unknown"),
        action=str(data["action"]),
        entity_id=entity_id,
        entity_type=str(data["entity_type"]),
    )
