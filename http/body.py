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
from werkzeug.exceptions import RequestEntityTooLarge

HIGH_WATER = 1 << 20
"""Bytes buffered before the receiving task waits for the consumer."""

SMALL_BODY_LIMIT = HIGH_WATER
"""Largest body accepted by routes that read their body whole (JSON).

Such a body is never held back at the mark (see ``BoundedBody.put``): its
reader takes nothing until the body ends, so the limit, not the mark,
bounds it."""

LINGER_SECONDS = 5.0
"""How long an answer given before its request body ended waits for that body.

A client that writes its whole body before reading (most do) would lose the
answer to a TCP reset if the connection closed while it was still sending;
so the answer goes out at once, the rest of the body is read and dropped
for up to this long, and only then is the exchange closed."""


class BoundedBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._room = trio.Event()
        self._room.set()
        self._abandoned = False

    async def put(self, data: bytes) -> None:
        """Append ``data``, first waiting while the buffer is above the mark.

        Only a streamed body waits: one with a limit at or under the mark is
        awaited whole, and nothing drains it before its end, so waiting for
        room would wait forever (a body that reaches exactly the limit with
        more to come would hang there); for it the next chunk trips the limit.
        """
        while (
            self._is_streamed()
            and len(self._data) >= HIGH_WATER
            and self._must_raise is None
            and not self._complete.is_set()
            and not self._abandoned
        ):
            self._room = trio.Event()
            await self._room.wait()
        if not self._abandoned:
            self.append(data)

    def _is_streamed(self) -> bool:
        limit = self._max_content_length
        return limit is None or limit > HIGH_WATER

    def abandon(self) -> None:
        """The handler has answered: drop whatever else arrives, never wait for room.

        The server closes a connection whose request body was not read to the
        end, and it tells the app so through the same queue the body arrives
        on; a receiver stuck waiting for room would never see that.
        """
        self._abandoned = True
        self._data.clear()
        self._room.set()

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
    """Feeds the body through ``BoundedBody.put`` instead of an unbounded append.

    An answer sent before the body was read to the end (a 413 mid-upload)
    abandons the body: the receiving task keeps taking messages and drops
    them, the answer is sent at once, and its closing message waits up to
    ``LINGER_SECONDS`` for the body to end (a lingering close). Once that
    last message is being sent, a disconnect no longer cancels the request:
    the server is closing the connection from inside that very send.
    """

    streaming_paths: frozenset[str] = frozenset({"/api/v1/documents/upload"})

    def _create_request_from_scope(self, send: Any) -> Any:
        request = super()._create_request_from_scope(send)
        if self.scope["path"] not in self.streaming_paths:
            request.body._max_content_length = SMALL_BODY_LIMIT
            declared = request.content_length
            if declared is not None and declared > SMALL_BODY_LIMIT:
                # The body was made before it had a limit, so its own check of the
                # declared length never ran: refuse now, not after waiting for bytes.
                request.body._must_raise = RequestEntityTooLarge()
        self._body: BoundedBody = request.body  # type: ignore[assignment]  # body_class
        self._finishing = False
        return request

    async def _send_response(self, send: Any, response: Any) -> None:
        body = self._body
        body.abandon()

        async def send_tracking_the_end(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                if not body._complete.is_set():
                    with trio.move_on_after(LINGER_SECONDS):
                        await body._complete.wait()
                self._finishing = True
            await send(message)

        await super()._send_response(send_tracking_the_end, response)

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
        if not self._finishing:
            nursery.cancel_scope.cancel()
