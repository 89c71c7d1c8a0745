"""The Entity & Permissions service: its blocking client, and a cache in front of it.

The call, as the contract fixes it::

    POST {EPR_SERVICE_URL}/api/v1/authorize
    {"user_id": "<uuid>", "action": "document:<verb>", "resource_id": "<entity uuid>",
     "principal_type": "user"}
    → 2xx {"authorized": true | false}

Errors: anything else (no connection, no answer within ``EPR_SERVICE_TIMEOUT``,
a non-2xx status, a body that is not that object) is ``DependencyUnavailable``,
never an allow. httpx's errors are mapped here and go no further.

Cache: both answers are kept for ``EPR_CACHE_TTL_SECONDS`` (0 keeps none),
at most ``max_entries`` of them, the least recently used evicted first, so
a burst of identical requests costs one call. Failures are not cached.

Threads: ``EprClient.is_authorized`` blocks; call it from a worker thread
(the HTTP layer's ``ServiceAuthorizer`` does, through a limiter). The cache
takes a lock, so the event loop may consult it while workers fill it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

import httpx

from vault.domain.errors import DependencyUnavailable
from vault.domain.models import Action

AUTHORIZE_PATH = "/api/v1/authorize"
MAX_ANSWER_BYTES = 64 * 1024
"""A longer answer is not the contract's ``{"authorized": …}``; reading stops there."""
DEFAULT_CACHE_ENTRIES = 10_000

DecisionKey = tuple[UUID, Action, UUID]
"""(user_id, action, resource_id): what one decision is about."""


class PermissionClient(Protocol):
    def is_authorized(
        self, user_id: UUID, action: Action, resource_id: UUID, *, request_id: str | None = None
    ) -> bool:
        """True or False as the service says; ``DependencyUnavailable`` when it cannot say."""

    def close(self) -> None:
        """Release connections; called once, at shutdown."""


class EprClient:
    """Blocking HTTP client of the permission service; one connection pool, reused."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        *,
        max_connections: int = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + AUTHORIZE_PATH
        self.timeout = timeout
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "document-vault"},
        )

    def is_authorized(
        self, user_id: UUID, action: Action, resource_id: UUID, *, request_id: str | None = None
    ) -> bool:
        body = {
            "user_id": str(user_id),
            "action": action.value,
            "resource_id": str(resource_id),
            "principal_type": "user",
        }
        headers = {"X-Request-ID": request_id} if request_id else None
        try:
            with self._http.stream("POST", self.url, json=body, headers=headers) as response:
                if not response.is_success:
                    raise DependencyUnavailable(
                        f"permissions service answered HTTP {response.status_code}"
                    )
                raw = _read_bounded(response)
        except httpx.TimeoutException as exc:
            raise DependencyUnavailable(
                f"permissions service did not answer within {self.timeout:g} s"
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise DependencyUnavailable(
                f"permissions service unreachable ({type(exc).__name__})"
            ) from exc
        return _authorized(raw)

    def close(self) -> None:
        self._http.close()


def _read_bounded(response: httpx.Response) -> bytes | None:
    """The answer's bytes, or None once it grows past ``MAX_ANSWER_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _authorized(raw: bytes | None) -> bool:
    """``{"authorized": true|false}`` → the boolean; anything else is unavailable."""
    data: Any = None
    if raw is not None:
        try:
            data = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both
            data = None
    if isinstance(data, dict) and isinstance(data.get("authorized"), bool):
        allowed: bool = data["authorized"]
        return allowed
    raise DependencyUnavailable("permissions service answered with an unexpected body")


class DecisionCache:
    """Allow and deny answers for ``ttl`` seconds; at most ``max_entries``, LRU evicted."""

    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[DecisionKey, tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: DecisionKey) -> bool | None:
        """The answer kept for ``key``, or None when there is none still fresh."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, allowed = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return allowed

    def put(self, key: DecisionKey, allowed: bool) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl, allowed)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class CachedPermissions:
    """The service's answers through the cache: one call per key per TTL."""

    def __init__(self, client: PermissionClient, cache: DecisionCache) -> None:
        self.client = client
        self.cache = cache

    def cached(self, key: DecisionKey) -> bool | None:
        """The kept answer, without calling anyone (safe on the event loop)."""
        return self.cache.get(key)

    def is_authorized(self, key: DecisionKey, *, request_id: str | None = None) -> bool:
        """The kept answer, else the service's, which is then kept. Blocks."""
        allowed = self.cache.get(key)
        if allowed is None:
            user_id, action, resource_id = key
            allowed = self.client.is_authorized(
                user_id, action, resource_id, request_id=request_id
            )
            self.cache.put(key, allowed)
        return allowed

    def close(self) -> None:
        self.client.close()
