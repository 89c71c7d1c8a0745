"""Incremental multipart/form-data parsing over an async stream of body chunks.

``python_multipart``'s parser is push-based and synchronous; this wraps it
into a pull-based async iterator of parts and data, so the upload handler
can forward a file's bytes as they arrive and never hold the whole body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from email.message import Message

import attrs
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from vault.domain.errors import InvalidRequest


@attrs.frozen
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@attrs.frozen
class PartData:
    data: bytes


@attrs.frozen
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data request, or a 422."""
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data":
        raise InvalidRequest.field("header", "content-type", "expected multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest.field("header", "content-type", "multipart boundary missing")
    return boundary


def _content_disposition(raw: str) -> tuple[str | None, str | None]:
    message = Message()
    message["content-disposition"] = raw
    name = message.get_param("name", header="content-disposition")
    filename = message.get_filename()
    return (
        name if isinstance(name, str) else None,
        filename,
    )


class _Collector:
    """Receives the parser's callbacks and queues events for the iterator."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.finished = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").lower()
        self._headers[name] = self._value.decode("utf-8", "replace")
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition")
        if disposition is None:
            raise InvalidRequest.field("body", "multipart", "a part has no Content-Disposition")
        name, filename = _content_disposition(disposition)
        if not name:
            raise InvalidRequest.field("body", "multipart", "a part has no name")
        self.events.append(PartStart(name, filename, self._headers.get("content-type")))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(data[start:end]))

    def _part_end(self) -> None:
        self.events.append(PartEnd())

    def _end(self) -> None:
        self.finished = True


async def parse_multipart(
    boundary: bytes, body: AsyncIterator[bytes]
) -> AsyncGenerator[Event, None]:
    """Yield parts as the body arrives; a malformed or truncated body is a 422."""
    collector = _Collector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    async for chunk in body:
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidRequest.field("body", "multipart", f"malformed body: {exc}") from None
        events, collector.events = collector.events, []
        for event in events:
            yield event
    if not collector.finished:
        raise InvalidRequest.field("body", "multipart", "body ended before the final boundary")
