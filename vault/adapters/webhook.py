"""The incident webhook's sink: one POST an event, Slack-compatible JSON.

Each outbox row is POSTed on its own (a webhook takes one message a
request) as its body, with ``Content-Type: application/json`` and
``Idempotency-Key: <event_id>``, so a receiver can drop the copy a retry
sends after an answer was lost. Redirects are not followed.

Answers, as the publisher sees them (one ``Delivery`` per row):

- 2xx: delivered;
- 408, 425, 429 and 5xx, a timeout, a refused connection: the receiver may
  take it later. Raised as ``DependencyUnavailable`` while nothing of this
  send was settled, so the publisher backs off the destination; once some
  rows were, the rest come back as retryable failures instead, so the ones
  already sent are marked rather than sent again;
- any other status (400, 403, 404, 410 …, and 3xx): the receiver refuses
  this message; the row is parked with the status and the answer's first
  line, and the rows behind it go on.

A webhook URL often holds its credential (Slack's does), so the sink names
only the URL's scheme and host in errors and in its name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from vault.adapters.http_answers import bounded_exchange
from vault.domain.errors import DependencyUnavailable
from vault.domain.events import OutboxRow
from vault.ports import Delivery

TIMEOUT_SECONDS = 10.0
"""Per request; a hanging receiver is left after this and tried again later."""
ANSWER_LIMIT = 64 * 1024
RETRYABLE = frozenset({408, 425, 429})


class WebhookUnavailable(DependencyUnavailable):
    pass


def redacted(url: str) -> str:
    """``scheme://host[:port]``: enough to tell which receiver, nothing of its secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


class WebhookSink:
    """POSTs each row's body to ``url``; see the module for what each answer means."""

    def __init__(
        self, url: str, *, timeout: float = TIMEOUT_SECONDS, client: httpx.Client | None = None
    ) -> None:
        self.url = url
        self.where = redacted(url)
        self.name = f"webhook:{self.where}"
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False,
            headers={"User-Agent": "document-vault"},
        )

    def close(self) -> None:
        self._client.close()

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for index, row in enumerate(rows):
            try:
                deliveries.append(self._post(row))
            except WebhookUnavailable as exc:
                if not deliveries:
                    raise
                deliveries.extend(
                    Delivery(later.id, ok=False, error=str(exc)) for later in rows[index:]
                )
                break
        return deliveries

    def _post(self, row: OutboxRow) -> Delivery:
        body = json.dumps(row.event.body, separators=(",", ":")).encode()
        try:
            status, _, answer = bounded_exchange(
                self._client, "POST", self.url, limit=ANSWER_LIMIT, error=WebhookUnavailable,
                unreachable="cannot reach", content=body,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(row.event.event_id),
                },
            )
        except WebhookUnavailable as exc:
            # bounded_exchange names the URL; keep its secret out of the error.
            raise WebhookUnavailable(str(exc).replace(self.url, self.where)) from None
        if 200 <= status < 300:
            return Delivery(row.id, ok=True)
        said = _first_line(answer)
        if status in RETRYABLE or status >= 500:
            raise WebhookUnavailable(f"{self.where} answered HTTP {status}{said}")
        return Delivery(
            row.id, ok=False, permanent=True,
            error=f"{self.where} refused the message: HTTP {status}{said}",
        )


def _first_line(answer: bytes) -> str:
    text = answer.decode("utf-8", "replace").strip().splitlines()
    return f" ({text[0][:200]})" if text else ""
