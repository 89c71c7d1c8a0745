"""Incremental multipart/form-data parsing over an async stream of body chunks.

``python_multipart``'s parser is push-based and synchronous; this wraps it
into a pull-based async iterator of parts and data, so the upload handler
can forward a file's bytes as they arrive and never hold the whole body.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from email.message import Message
from email.utils import collapse_rfc2231_value

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

MAX_PARTS = 64
"""Parts one body may have: the form has seven fields and one file. (Each part's
headers are bounded by python-multipart: 8 headers of at most 4224 bytes.)"""

_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
"""RFC 2046's boundary: 1 to 70 of its characters, not ending in a space."""


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data request, or a 422."""
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data":
        raise InvalidRequest.field("header", "content-type", "expected multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest.field("header", "content-type", "multipart boundary missing")
    if not _BOUNDARY.fullmatch(boundary):
        raise InvalidRequest.field(
            "header", "content-type",
            "multipart boundary must be 1 to 70 characters that RFC 2046 allows",
        )
    return boundary


_RFC2231_CODECS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "iso-8859-1": "latin-1", "latin-1": "latin-1", "latin1": "latin-1",
    "us-ascii": "ascii", "ascii": "ascii",
}
"""The charsets an RFC 2231 ``filename*`` may name (RFC 5987 requires UTF-8 and
ISO-8859-1); any other is read as UTF-8, never looked up as a codec, since
``idna``, ``punycode`` or ``unicode_escape`` would fail or invent characters."""


def _content_disposition(raw: str) -> tuple[str | None, str | None]:
    message = Message()
    message["content-disposition"] = raw
    name = message.get_param("name", header="content-disposition")
    return (
        name if isinstance(name, str) else None,
        _filename(message.get_param("filename", header="content-disposition")),
    )


def _filename(param: str | tuple[str | None, str | None, str] | None) -> str | None:
    """A ``filename`` parameter, or an RFC 2231 ``filename*`` decoded with a known charset."""
    if param is None:
        return None
    if isinstance(param, str):
        return collapse_rfc2231_value(param).strip()  # a plain value: unquoted, no codec
    charset, _language, text = param
    codec = _RFC2231_CODECS.get((charset or "us-ascii").strip().lower(), "utf-8")
    return text.encode("raw-unicode-escape").decode(codec, "replace").strip()


class _Collector:
    """Receives the parser's callbacks and queues events for the iterator."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.finished = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}
        self._parts = 0

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
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest.field("body", "multipart", f"more than {MAX_PARTS} parts")
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
