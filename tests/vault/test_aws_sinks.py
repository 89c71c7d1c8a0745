"""The SQS and SNS sinks against moto's server on loopback.

moto refuses what AWS refuses for its size in most places (an SQS message
over the queue's ``MaximumMessageSize``, an SQS request over 1 MiB, an SNS
message over 256 KiB); where it does not (an SNS request over 256 KiB in
total), a thin wrapper around the real client refuses as AWS does.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.support import test_settings
from vault.adapters.aws.clients import aws_client
from vault.adapters.aws.sinks import BATCH_BYTES, SnsSink, SqsSink, pack, refused_for_content
from vault.domain.errors import DependencyUnavailable
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.models import utcnow


def _row(
    row_id: int, destination: Destination, attributes: dict[str, str], *, padding: int = 0
) -> OutboxRow:
    event_id = uuid.uuid4()
    body: dict[str, Any] = {"event_id": str(event_id), "n": row_id}
    if padding:
        body["padding"] = "p" * padding
    event = OutboxEvent(
        event_id=event_id,
        destination=destination,
        body=body,
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


DOCUMENT = {"event_type": "document.uploaded"}
AUDIT = {"action": "document.uploaded", "source": "document-vault-service"}


def _refusal(
    code: str, message: str = "refused", operation: str = "SendMessageBatch"
) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class RecordingClient:
    """A boto3 SQS/SNS client that records each batch call's entry ids, and can refuse a
    request over ``total_limit`` bytes of messages (as SNS does and moto does not) or
    stop answering from call number ``down_from_call`` on."""

    def __init__(
        self, client: Any, *, total_limit: int | None = None, down_from_call: int | None = None
    ) -> None:
        self.client = client
        self.total_limit = total_limit
        self.down_from_call = down_from_call
        self.calls: list[list[str]] = []

    def _check(self, entries: list[dict[str, Any]], body_key: str, operation: str) -> None:
        self.calls.append([entry["Id"] for entry in entries])
        if self.down_from_call is not None and len(self.calls) >= self.down_from_call:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        total = sum(len(entry[body_key].encode()) for entry in entries)
        if self.total_limit is not None and total > self.total_limit:
            raise _refusal("BatchRequestTooLong", f"{total} bytes in total", operation)

    def send_message_batch(self, **kwargs: Any) -> Any:
        self._check(kwargs["Entries"], "MessageBody", "SendMessageBatch")
        return self.client.send_message_batch(**kwargs)

    def publish_batch(self, **kwargs: Any) -> Any:
        self._check(kwargs["PublishBatchRequestEntries"], "Message", "PublishBatch")
        return self.client.publish_batch(**kwargs)


def _queue(sqs: Any, max_size: int | None = None) -> str:
    attributes = {} if max_size is None else {"MaximumMessageSize": str(max_size)}
    url: str = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex}", Attributes=attributes)[
        "QueueUrl"]
    return url


def _outcome(deliveries: list[Any]) -> dict[int, str]:
    """Row id -> ``ok``, ``permanent`` or ``retry``."""
    return {
        d.row_id: "ok" if d.ok else "permanent" if d.permanent else "retry" for d in deliveries
    }


def _numbers(messages: list[dict[str, Any]], *, envelope: bool = False) -> list[int]:
    """The ``n`` of each message received, sorted (so duplicates show)."""
    bodies = [json.loads(m["Body"]) for m in messages]
    if envelope:
        bodies = [json.loads(b["Message"]) for b in bodies]
    return sorted(body["n"] for body in bodies)


@pytest.fixture
def audit_topic(sns: Any, sqs: Any) -> tuple[str, str]:
    """A topic and the URL of a queue subscribed to it."""
    topic: str = sns.create_topic(Name=f"audit-{uuid.uuid4().hex}")["TopicArn"]
    url = _queue(sqs)
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, url


class TestPacking:
    @staticmethod
    def _sizes(*sizes: int) -> list[tuple[OutboxRow, dict[str, Any], int]]:
        return [
            (_row(i, Destination.DOCUMENT_EVENTS, DOCUMENT), {}, size)
            for i, size in enumerate(sizes, start=1)
        ]

    @staticmethod
    def _ids(batches: list[Any]) -> list[list[int]]:
        return [[row.id for row, _ in batch] for batch in batches]

    def test_at_most_ten_entries_per_batch(self) -> None:
        """Twenty-three small entries go as ten, ten and three, in order."""
        batches = pack(self._sizes(*[100] * 23))
        assert [len(batch) for batch in batches] == [10, 10, 3]
        assert [i for ids in self._ids(batches) for i in ids] == list(range(1, 24))

    def test_a_batch_stays_under_the_request_limit(self) -> None:
        """Entries of 100 KiB go two by two: three would pass 256 KiB."""
        batches = pack(self._sizes(*[100 * 1024] * 5))
        assert self._ids(batches) == [[1, 2], [3, 4], [5]]

    def test_an_entry_over_the_limit_goes_alone(self) -> None:
        """An entry bigger than a whole request travels in a batch of its own."""
        batches = pack(self._sizes(10, BATCH_BYTES + 1, 10, 10))
        assert self._ids(batches) == [[1], [2], [3, 4]]


class TestRefusalKinds:
    @pytest.mark.parametrize(
        ("code", "message"),
        [
            ("AWS.SimpleQueueService.BatchRequestTooLong", "Batch requests cannot be longer"),
            ("InvalidParameterValue", "Message must be shorter than 262144 bytes."),
            ("InvalidParameter", "Invalid parameter: Message too long"),
            ("InvalidMessageContents", "Invalid binary character"),
        ],
    )
    def test_refusals_of_the_content_are_recognised(self, code: str, message: str) -> None:
        """Codes that blame what the entries carry mean: split, then park the culprit."""
        assert refused_for_content(_refusal(code, message))

    @pytest.mark.parametrize(
        ("code", "message"),
        [
            ("AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."),
            ("NotFound", "Topic does not exist"),
            ("AccessDenied", "not authorized"),
            ("InvalidClientTokenId", "The security token included in the request is invalid"),
            ("ThrottlingException", "Rate exceeded"),
            ("InternalError", "try again"),
            ("InvalidParameter", "Invalid parameter: TopicArn"),
        ],
    )
    def test_other_refusals_may_pass(self, code: str, message: str) -> None:
        """Codes that blame the target, the credentials or the service are retried."""
        assert not refused_for_content(_refusal(code, message))


class TestSqsRefusals:
    def test_an_oversized_entry_is_refused_alone(self, sqs: Any) -> None:
        """An entry over the queue's size limit is refused for good; its neighbours arrive."""
        url = _queue(sqs, max_size=256 * 1024)
        rows = [
            _row(1, Destination.DOCUMENT_EVENTS, DOCUMENT),
            _row(2, Destination.DOCUMENT_EVENTS, DOCUMENT, padding=300_000),
            _row(3, Destination.DOCUMENT_EVENTS, DOCUMENT),
        ]
        deliveries = SqsSink("sqs:test", sqs, url).send(rows)
        assert _outcome(deliveries) == {1: "ok", 2: "permanent", 3: "ok"}
        (refused,) = [d for d in deliveries if not d.ok]
        assert refused.error is not None
        assert refused.error.startswith("InvalidParameterValue: ")
        assert _numbers(_drain(sqs, url)) == [1, 3]

    def test_a_refused_batch_is_split_down_to_the_bad_entry(self, sqs: Any) -> None:
        """A batch the queue refuses as a whole is halved until only the bad entry is
        refused; every other entry arrives exactly once."""
        url = _queue(sqs, max_size=1024)
        rows = [
            _row(i, Destination.DOCUMENT_EVENTS, DOCUMENT, padding=2000 if i == 5 else 0)
            for i in range(1, 8)
        ]
        client = RecordingClient(sqs)
        deliveries = SqsSink("sqs:test", client, url).send(rows)
        assert client.calls[0] == [str(i) for i in range(1, 8)]
        assert _outcome(deliveries) == {i: "permanent" if i == 5 else "ok" for i in range(1, 8)}
        assert _numbers(_drain(sqs, url)) == [1, 2, 3, 4, 6, 7]

    def test_an_entry_over_the_request_limit_is_refused_for_good(self, sqs: Any) -> None:
        """An entry bigger than any request may be is reported permanent, not retried."""
        url = _queue(sqs)
        row = _row(1, Destination.DOCUMENT_EVENTS, DOCUMENT, padding=1_100_000)
        (delivery,) = SqsSink("sqs:test", sqs, url).send([row])
        assert (delivery.ok, delivery.permanent) == (False, True)
        assert delivery.error is not None
        assert delivery.error.startswith("BatchRequestTooLong: ")

    def test_an_outage_after_the_first_batch_leaves_the_rest_retryable(self, sqs: Any) -> None:
        """Rows already sent are reported delivered; the rows after the outage are
        retryable failures, not an exception that would have them all sent again."""
        url = _queue(sqs)
        rows = [_row(i, Destination.DOCUMENT_EVENTS, DOCUMENT) for i in range(1, 16)]
        deliveries = SqsSink("sqs:test", RecordingClient(sqs, down_from_call=2), url).send(rows)
        assert _outcome(deliveries) == {i: "ok" if i <= 10 else "retry" for i in range(1, 16)}
        assert _numbers(_drain(sqs, url)) == list(range(1, 11))


class TestSnsRefusals:
    def test_an_oversized_entry_fails_alone_and_for_good(
        self, sns: Any, sqs: Any, audit_topic: tuple[str, str]
    ) -> None:
        """An entry over 256 KiB is refused for good; its neighbours are published."""
        topic, url = audit_topic
        rows = [
            _row(1, Destination.AUDIT_EVENTS, AUDIT),
            _row(2, Destination.AUDIT_EVENTS, AUDIT, padding=300_000),
            _row(3, Destination.AUDIT_EVENTS, AUDIT),
        ]
        deliveries = SnsSink("sns:test", sns, topic).send(rows)
        assert _outcome(deliveries) == {1: "ok", 2: "permanent", 3: "ok"}
        assert _numbers(_drain(sqs, url), envelope=True) == [1, 3]

    def test_a_batch_refused_for_its_total_size_is_split(
        self, sns: Any, sqs: Any, audit_topic: tuple[str, str]
    ) -> None:
        """A request refused as too long in total is sent again in halves; every entry is
        published exactly once."""
        topic, url = audit_topic
        rows = [_row(i, Destination.AUDIT_EVENTS, AUDIT, padding=40_000) for i in range(1, 5)]
        client = RecordingClient(sns, total_limit=100_000)
        deliveries = SnsSink("sns:test", client, topic).send(rows)
        assert client.calls == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"]]
        assert _outcome(deliveries) == {1: "ok", 2: "ok", 3: "ok", 4: "ok"}
        assert _numbers(_drain(sqs, url), envelope=True) == [1, 2, 3, 4]
