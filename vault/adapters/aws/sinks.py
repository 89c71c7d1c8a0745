"""Queue and topic sinks: document events and alerts to SQS, audit events to SNS.

Batching: rows go in batches of at most ten entries (both APIs' limit)
whose payloads (body plus attribute names, types and values) add up to at
most ``BATCH_BYTES``, the lower of the two services' limits on one request.
An entry bigger than that on its own goes in a batch of one, so the service
can refuse it without refusing its neighbours.

Errors, as the publisher sees them (one ``Delivery`` per row):

- a call the service refuses because of what it carries (the batch too
  long in total, an entry too long or malformed) is split in halves, and
  each half sent on its own, down to single entries; a single entry
  refused that way is reported permanent, so the publisher parks it;
- an entry the service fails inside an accepted batch is permanent when the
  service says it was the sender's fault, retryable otherwise;
- a call that fails for a reason that may pass (endpoint unreachable,
  throttled, credentials refused, the queue or topic missing) raises
  ``DependencyUnavailable`` when nothing of this send was settled yet;
  once some rows were, the rows not yet sent come back as retryable
  failures instead, so the ones already sent are marked delivered rather
  than sent again.

botocore's exceptions are mapped here, at the adapter boundary.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vault.domain.errors import DependencyUnavailable
from vault.domain.events import OutboxRow
from vault.ports import Delivery

BATCH_LIMIT = 10
BATCH_BYTES = 256 * 1024
"""SNS takes 256 KiB per request (SQS now takes 1 MiB): pack for the lower."""

_REFUSED_FOR_CONTENT = frozenset({
    "BatchRequestTooLong",  # the entries' total size
    "InvalidParameterValue",  # SQS: an entry too long, or its attributes malformed
    "InvalidParameter",  # SNS: the same
    "InvalidMessageContents",  # SQS: characters outside the allowed set
    "MessageAttributesInvalid",
})
_NAMES_THE_TARGET = re.compile(r"QueueUrl|TopicArn", re.IGNORECASE)

Entry = dict[str, Any]
Batch = list[tuple[OutboxRow, Entry]]


def _attributes(row: OutboxRow) -> dict[str, dict[str, str]]:
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in row.event.attributes.items()
    }


def _body(row: OutboxRow) -> str:
    return json.dumps(row.event.body, separators=(",", ":"))


def payload_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """What the services count against their size limits: the body and every attribute."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value["StringValue"].encode())
    return size


def pack(sized: Sequence[tuple[OutboxRow, Entry, int]]) -> list[Batch]:
    """Consecutive batches of at most ``BATCH_LIMIT`` entries and ``BATCH_BYTES``, in order."""
    batches: list[Batch] = []
    current: Batch = []
    total = 0
    for row, entry, size in sized:
        if current and (len(current) == BATCH_LIMIT or total + size > BATCH_BYTES):
            batches.append(current)
            current, total = [], 0
        current.append((row, entry))
        total += size
    if current:
        batches.append(current)
    return batches


def _error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("QueryErrorCode") or error.get("Code") or "")
    # SQS answers ``AWS.SimpleQueueService.BatchRequestTooLong`` style codes.
    return code.rsplit(".", 1)[-1]


def refused_for_content(exc: ClientError) -> bool:
    """True when the service refused the call because of the entries it carried."""
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return _error_code(exc) in _REFUSED_FOR_CONTENT and not _NAMES_THE_TARGET.search(message)


def _describe(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{_error_code(exc)}: {error.get('Message', '')}"


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


class _BatchSink:
    """Packing, splitting and settling; subclasses say how one entry and one call look."""

    name: str
    what: str
    fifo: bool

    def _entry(self, row: OutboxRow, body: str, attributes: dict[str, Any]) -> Entry:
        raise NotImplementedError

    def _call(self, entries: list[Entry]) -> dict[str, Any]:
        raise NotImplementedError

    def _fifo_ids(self, row: OutboxRow) -> Entry:
        if not self.fifo:
            return {}
        return {
            "MessageGroupId": row.event.group_id or str(row.event.event_id),
            "MessageDeduplicationId": str(row.event.event_id),
        }

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        """One ``Delivery`` per row, in the module docstring's terms; batches go in order."""
        sized = []
        for row in rows:
            body, attributes = _body(row), _attributes(row)
            sized.append((row, self._entry(row, body, attributes), payload_size(body, attributes)))
        todo = deque(pack(sized))
        deliveries: list[Delivery] = []
        while todo:
            batch = todo.popleft()
            try:
                answer = self._attempt([entry for _, entry in batch])
            except DependencyUnavailable as exc:
                if not deliveries:
                    raise
                unsent = [row for pending in (batch, *todo) for row, _ in pending]
                deliveries.extend(Delivery(row.id, ok=False, error=str(exc)) for row in unsent)
                break
            if isinstance(answer, ClientError):
                if len(batch) == 1:
                    row = batch[0][0]
                    deliveries.append(
                        Delivery(row.id, ok=False, permanent=True, error=_describe(answer))
                    )
                else:
                    middle = len(batch) // 2
                    todo.extendleft([batch[middle:], batch[:middle]])
                continue
            deliveries.extend(_settle([row for row, _ in batch], answer))
        return deliveries

    def _attempt(self, entries: list[Entry]) -> dict[str, Any] | ClientError:
        """The service's answer, or the error refusing these entries; an outage raises."""
        try:
            return self._call(entries)
        except ClientError as exc:
            if refused_for_content(exc):
                return exc
            raise DependencyUnavailable(f"{self.what}: {exc}") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable(f"{self.what}: {exc}") from exc


class SqsSink(_BatchSink):
    """Sends rows to one SQS queue; FIFO queues get a group and a deduplication id."""

    def __init__(self, name: str, client: Any, queue_url: str) -> None:
        self.name = name
        self.what = f"sqs send to {name}"
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    def _entry(self, row: OutboxRow, body: str, attributes: dict[str, Any]) -> Entry:
        return {
            "Id": str(row.id),
            "MessageBody": body,
            "MessageAttributes": attributes,
            **self._fifo_ids(row),
        }

    def _call(self, entries: list[Entry]) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.send_message_batch(
            QueueUrl=self.queue_url, Entries=entries
        )
        return answer


class SnsSink(_BatchSink):
    """Publishes rows to one SNS topic; FIFO topics get a group and a deduplication id."""

    def __init__(self, name: str, client: Any, topic_arn: str) -> None:
        self.name = name
        self.what = f"sns publish to {name}"
        self.client = client
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")

    def _entry(self, row: OutboxRow, body: str, attributes: dict[str, Any]) -> Entry:
        return {
            "Id": str(row.id),
            "Message": body,
            "MessageAttributes": attributes,
            **self._fifo_ids(row),
        }

    def _call(self, entries: list[Entry]) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.publish_batch(
            TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
        )
        return answer
