"""One bounded HTTP exchange for the small clients (ledger monitor, timestamp authority).

``bounded_answer`` sends one request and reads the answer's body as it
streams, refusing more than ``limit`` bytes, so a misbehaving server cannot
make the caller hold an arbitrary amount. Every failure (a status other
than 200, an over-long body, a timeout, any other transport error) is the
caller's ``DependencyUnavailable`` subclass with a one-line detail naming
the URL; httpx's errors go no further.
"""

from __future__ import annotations

from typing import Any

import httpx

from vault.domain.errors import DependencyUnavailable


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
    """The body of a 200 answer to ``method url``, at most ``limit`` bytes.

    ``unreachable`` opens the detail of a transport error (``cannot fetch``).
    """
    try:
        with client.stream(method, url, **request) as response:
            if response.status_code != 200:
                raise error(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise error(f"{url} answered more than {limit} bytes")
    except httpx.TimeoutException:
        raise error(f"{url} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise error(f"{unreachable} {url}: {exc or type(exc).__name__}") from None
    return bytes(body)
