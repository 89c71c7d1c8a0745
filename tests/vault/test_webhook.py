"""The incident webhook's sink against a real HTTP receiver on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from tests.permission_service import closed_port_url
from tests.webhook_receiver import WebhookReceiver
from vault.adapters.webhook import WebhookSink, WebhookUnavailable, redacted
from vault.domain.events import OutboxRow
from vault.domain.models import Actor
from vault.domain.notifications import freeze_changed
from vault.ports import Delivery

AT = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
TIMEOUT = 0.3


def rows(n: int) -> list[OutboxRow]:
    return [
        OutboxRow(
            id=i + 1,
            event=freeze_changed(uuid4(), frozen=True, actor=Actor.system(),
                                 reason=f"reason {i}", incident_id=None, at=AT),
            attempts=0,
        )
        for i in range(n)
    ]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver.running() as running:
        yield running


@pytest.fixture
def sink(receiver: WebhookReceiver) -> Iterator[WebhookSink]:
    made = WebhookSink(receiver.url, timeout=TIMEOUT)
    yield made
    made.close()


class TestDelivery:
    def test_each_row_is_one_post_of_its_body(
        self, sink: WebhookSink, receiver: WebhookReceiver
    ) -> None:
        sent = rows(3)
        assert sink.send(sent) == [Delivery(i, ok=True) for i in (1, 2, 3)]
        assert [c.body for c in receiver.calls] == [r.event.body for r in sent]
        first = receiver.calls[0]
        assert first.path == "/hooks/T000/B000/s3cr3t"
        assert first.headers["Content-Type"] == "application/json"
        assert first.headers["Idempotency-Key"] == str(sent[0].event.event_id)
        assert first.body["text"].startswith("Entity ")

    def test_a_refusal_parks_that_row_and_the_rest_go_on(
        self, sink: WebhookSink, receiver: WebhookReceiver
    ) -> None:
        receiver.then(200, 404)
        deliveries = sink.send(rows(3))
        assert [(d.row_id, d.ok, d.permanent) for d in deliveries] == [
            (1, True, False), (2, False, True), (3, True, False)
        ]
        error = deliveries[1].error or ""
        assert "HTTP 404 (invalid_payload)" in error
        assert "s3cr3t" not in error and redacted(receiver.url) in error

    def test_a_redirect_is_not_followed_and_counts_as_a_refusal(
        self, sink: WebhookSink, receiver: WebhookReceiver
    ) -> None:
        receiver.then(301)
        [delivery] = sink.send(rows(1))
        assert delivery.permanent and "HTTP 301" in (delivery.error or "")
        assert len(receiver.calls) == 1


class TestTheReceiverDown:
    @pytest.mark.parametrize("status", [500, 503, 429, 408])
    def test_a_failing_first_answer_fails_the_whole_send(
        self, sink: WebhookSink, receiver: WebhookReceiver, status: int
    ) -> None:
        receiver.then(status)
        with pytest.raises(WebhookUnavailable, match=f"HTTP {status}") as raised:
            sink.send(rows(3))
        assert "s3cr3t" not in str(raised.value)
        assert len(receiver.calls) == 1  # the rows behind were not tried

    def test_a_failure_after_a_delivery_returns_the_rest_as_retryable(
        self, sink: WebhookSink, receiver: WebhookReceiver
    ) -> None:
        receiver.then(200, 502)
        deliveries = sink.send(rows(3))
        assert [(d.row_id, d.ok, d.permanent) for d in deliveries] == [
            (1, True, False), (2, False, False), (3, False, False)
        ]
        assert "HTTP 502" in (deliveries[2].error or "")
        assert len(receiver.calls) == 2

    def test_a_hanging_receiver_is_left_after_the_timeout(
        self, sink: WebhookSink, receiver: WebhookReceiver
    ) -> None:
        receiver.then("hang")
        started = time.monotonic()
        with pytest.raises(WebhookUnavailable, match="did not answer in time") as raised:
            sink.send(rows(2))
        assert time.monotonic() - started < TIMEOUT * 10
        assert "s3cr3t" not in str(raised.value)
        assert len(receiver.answered("hang")) == 1

    def test_nothing_listening(self) -> None:
        url = closed_port_url() + "/hooks/s3cr3t"
        sink = WebhookSink(url, timeout=TIMEOUT)
        try:
            with pytest.raises(WebhookUnavailable, match="cannot reach") as raised:
                sink.send(rows(1))
        finally:
            sink.close()
        assert "s3cr3t" not in str(raised.value)


def test_the_name_and_errors_show_only_scheme_and_host() -> None:
    sink = WebhookSink("https://hooks.slack.com:8443/services/T0/B0/token?x=1")
    try:
        assert sink.name == "webhook:https://hooks.slack.com:8443"
    finally:
        sink.close()

