"""A request body with a high-water mark, so a slow consumer slows the client.

Quart appends every ASGI body message to an unbounded buffer as fast as the
server delivers them. Here the task that receives ASGI messages waits while
more than ``HIGH_WATER`` bytes are buffered, so hypercorn stops reading the
socket and TCP pushes back on the client. Routes that stream (the upload)
iterate ``request.body``; every other route gets a small size limit instead,
since an awaited body must fit under the mark.
"""

from __future__ import annotations

from typing import Any

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest

HIGH_WATER = 1 << 20
"""Bytes buffered before the receiving task waits for the consumer."""

SMALL_BODY_LIMIT = HIGH_WATER
"""Largest body accepted by routes that read their body whole (JSON)."""


class BoundedBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._room = trio.Event()
        self._room.set()

    async def put(self, data: bytes) -> None:
        """Append ``data``, first waiting while the buffer is above the mark."""
        while (
            len(self._data) >= HIGH_WATER
            and self._must_raise is None
            and not self._complete.is_set()
        ):
            self._room = trio.Event()
            await self._room.wait()
        self.append(data)

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._room.set()
        return data

    def clear(self) -> None:
        super().clear()
        self._room.set()


class BoundedRequest(TrioRequest):
    body_class = BoundedBody


class BoundedHTTPConnection(TrioASGIHTTPConnection):
    """Feeds the body through ``BoundedBody.put`` instead of an unbounded append."""

    streaming_paths: frozenset[str] = frozenset({"/api/v1/documents/upload"})

    def _create_request_from_scope(self, send: Any) -> Any:
        request = super()._create_request_from_scope(send)
        if self.scope["path"] not in self.streaming_paths:
            request.body._max_content_length = SMALL_BODY_LIMIT
        return request

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, receive: Any
    ) -> None:
        body: BoundedBody = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                await body.put(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()
