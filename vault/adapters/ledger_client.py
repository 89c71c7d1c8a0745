"""The ledger's public routes, fetched by ``vault ledger monitor``.

    GET {BASE}/api/v1/ledger/checkpoint                    → 200 text/plain signed checkpoint
    GET {BASE}/api/v1/ledger/consistency?from=M&to=N       → 200 {"from", "to", "hashes"}

Errors: no connection, no answer within the timeout, a status other than
200, an answer longer than ``MAX_ANSWER_BYTES`` or not UTF-8 are
``LedgerUnavailable`` (a ``DependencyUnavailable``) whose detail names the
URL and what went wrong. httpx's errors are mapped here and go no further.
"""

from __future__ import annotations

import httpx

from vault.adapters.http_answers import bounded_answer
from vault.domain.errors import DependencyUnavailable

CHECKPOINT_PATH = "/api/v1/ledger/checkpoint"
CONSISTENCY_PATH = "/api/v1/ledger/consistency"
TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class LedgerUnavailable(DependencyUnavailable):
    """The ledger's routes could not be fetched, or answered something unusable."""


class LedgerClient:
    """A blocking client of one vault's ledger routes, ``base_url`` its ``scheme://host:port``."""

    def __init__(
        self, base_url: str, *, timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise LedgerUnavailable(f"not a base URL: {base_url!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise LedgerUnavailable(f"not an http(s)://host:port base URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checkpoint(self) -> str:
        """The latest signed checkpoint's note text."""
        return self._get(CHECKPOINT_PATH, {})

    def consistency(self, size1: int, size2: int) -> str:
        """The consistency route's JSON text for ``from=size1&to=size2``."""
        return self._get(CONSISTENCY_PATH, {"from": str(size1), "to": str(size2)})

    def _get(self, path: str, params: dict[str, str]) -> str:
        url = self.base_url + path
        body = bounded_answer(
            self._client, "GET", url, limit=MAX_ANSWER_BYTES, error=LedgerUnavailable,
            unreachable="cannot fetch", params=params,
        )
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise LedgerUnavailable(f"{url} answered text that is not UTF-8") from None
