"""A blocking RFC 3161 client: one Time-Stamp Authority, one digest a call.

    POST {URL}   Content-Type: application/timestamp-query, body a TimeStampReq
             → 200 application/timestamp-reply, body a TimeStampResp

``TimestampClient.timestamp(digest)`` sends a request for the SHA-256
``digest`` with a fresh random nonce and certReq set, and returns the token
only once ``vault.domain.timestamp`` has checked the answer: granted, the
same nonce and imprint, signed through the configured certificates.

Errors:

- no connection, no answer within the timeout, a status other than 200, an
  answer longer than ``MAX_ANSWER_BYTES``: ``TimestampUnavailable`` (a
  ``DependencyUnavailable``) whose detail names the URL and what went wrong;
- an answer that is not a TimeStampResp, a status other than granted
  (``TimestampRejected``), or a token failing a check: ``InvalidTimestamp``.

httpx's errors are mapped here and go no further.
"""

from __future__ import annotations

import secrets

import httpx

from vault.adapters.http_answers import bounded_answer
from vault.domain.errors import DependencyUnavailable
from vault.domain.timestamp import (
    InvalidTimestamp,
    TimestampRejected,
    TimestampToken,
    check_response,
    load_certificates,
    timestamp_request,
)

__all__ = [
    "InvalidTimestamp",
    "TimestampClient",
    "TimestampRejected",
    "TimestampToken",
    "TimestampUnavailable",
]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 1024 * 1024
NONCE_BITS = 64


class TimestampUnavailable(DependencyUnavailable):
    """The TSA could not be reached, or did not answer 200 in time."""


class TimestampClient:
    """A client of the TSA at ``url``, trusting the PEM ``certs`` (its chain and root)."""

    def __init__(
        self, url: str, *, certs: list[bytes], timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"not a TSA URL: {url!r}: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"not an http(s) TSA URL: {url!r}")
        self.url = url
        self._certs = load_certificates(certs)
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TimestampClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def timestamp(self, digest: bytes) -> TimestampToken:
        """A verified token over the SHA-256 ``digest`` (32 bytes)."""
        nonce = secrets.randbits(NONCE_BITS) | 1  # positive, never zero
        request = timestamp_request(digest, nonce)
        answer = self._post(request)
        return check_response(answer, digest, nonce, self._certs)

    def _post(self, request: bytes) -> bytes:
        return bounded_answer(
            self._client, "POST", self.url, limit=MAX_ANSWER_BYTES, error=TimestampUnavailable,
            unreachable="cannot reach the TSA at", content=request,
            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
        )
