"""One bounded HTTP exchange for the small clients (ledger monitor, TSA, witness, chain).

``bounded_exchange`` sends one request and reads the answer's body as it
streams, refusing more than ``limit`` bytes, so a misbehaving server cannot
make the caller hold an arbitrary amount; it answers the status, content
type and body. ``bounded_answer`` is the same for callers that only take a
200. Every failure (an over-long body, a timeout, any other transport
error, and for ``bounded_answer`` a status other than 200) is the caller's
``DependencyUnavailable`` subclass with a one-line detail naming the URL;
httpx's errors go no further.
"""

from __future__ import annotations

from typing import Any

import httpx

from vault.domain.errors import DependencyUnavailable


def bounded_exchange(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    limit: int,
    error: type[DependencyUnavailable],
    unreachable: str,
    **request: Any,
) -> tuple[int, str, bytes]:
    """The status, content type and body (at most ``limit`` bytes) of any answer.

    ``unreachable`` opens the detail of a transport error (``cannot fetch``).
    """
    try:
        with client.stream(method, url, **request) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise error(f"{url} answered more than {limit} bytes")
            return response.status_code, response.headers.get("content-type", ""), bytes(body)
    except httpx.TimeoutException:
        raise error(f"{url} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise error(f"{unreachable} {url}: {exc or type(exc).__name__}") from None


def bounded_answer(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    limit: int,
    error: type[DependencyUnavailable],
    unreachable: str,
    **request: Any,
) -> bytes:
    """The body of a 200 answer to ``method url``, at most ``limit`` bytes."""
    status, _, body = bounded_exchange(
        client, method, url, limit=limit, error=error, unreachable=unreachable, **request
    )
    if status != 200:
        raise error(f"{url} answered HTTP {status}")
    return body
