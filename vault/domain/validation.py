"""Upload rules with no I/O: filenames, metadata, MIME types and the byte stream.

``Ingest`` sees an upload's bytes once, as they arrive: it counts them,
hashes them and checks that they look like the declared type, failing as
early as the bytes allow so a bad upload is refused before it is stored.

Errors, in the contract's order: ``EmptyFile`` (only known at ``finish``),
``InvalidFileType`` (at construction for a type not allowed, as soon as the
leading bytes disagree with the type, or at ``finish`` when too few arrived),
then ``FileTooLarge`` (as soon as the count passes the limit). Within one
chunk the type is checked before the size.

``load_json`` reads any JSON a client sends (the verify body, the
``metadata`` field, a list cursor) within limits that every later step can
honour: what it returns can be stored in either database and encoded in an
answer, so a hostile document is refused here, as the client's error, and
never fails later as the service's.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re
import unicodedata
from itertools import accumulate
from typing import Any
from urllib.parse import quote
from uuid import UUID

import attrs

from vault.domain.errors import (
    EmptyFile,
    FileTooLarge,
    InvalidFileType,
    InvalidMetadata,
    InvalidRequest,
)

MAX_FILENAME_LENGTH = 255
MAX_KEPT_EXTENSION = 16
"""An extension up to this long (dot included) survives trimming a long name."""
DEFAULT_FILENAME = "document"
UNDECLARED_MIME = "application/octet-stream"

_INVALID_JSON = "metadata must be valid JSON"

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects taken in JSON a client sends (the
answer's encoder stops at 255 levels, and a document nests its metadata two
levels down)."""
MIN_JSON_INTEGER = -(2**63)
MAX_JSON_INTEGER = 2**64 - 1
"""The integers the answer's encoder (orjson) can write; outside them, a
number would be stored and then fail every answer that carries it."""
_MAX_INTEGER_DIGITS = len(str(MAX_JSON_INTEGER))
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_BRACKET_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}

_PDF = (b"%PDF-", "a PDF document")
_PNG = (b"\x89PNG\r\n\x1a\n", "a PNG image")
_JPEG = (b"\xff\xd8\xff", "a JPEG image")
_ZIP = (b"PK\x03\x04", "an Office Open XML (ZIP) document")
_OLE = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office (OLE) document")
_OOXML_PREFIX = "application/vnd.openxmlformats-officedocument."
_TEXT = "text/plain"

_SIGNATURES: dict[str, tuple[bytes, str]] = {
    "application/pdf": _PDF,
    "image/png": _PNG,
    "image/jpeg": _JPEG,
    "image/jpg": _JPEG,
    "application/msword": _OLE,
    "application/vnd.ms-excel": _OLE,
    "application/vnd.ms-powerpoint": _OLE,
}


def clean_filename(raw: str | None) -> str:
    """The name as sent, minus any path and control characters, at most 255 characters."""
    if raw is None:
        return DEFAULT_FILENAME
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not _is_unwanted(ch)).strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    if len(name) <= MAX_FILENAME_LENGTH:
        return name
    dot = name.rfind(".")
    extension = name[dot:] if dot > 0 else ""
    if not extension or len(extension) > MAX_KEPT_EXTENSION or extension.strip() != extension:
        return name[:MAX_FILENAME_LENGTH].rstrip()
    stem = name[: MAX_FILENAME_LENGTH - len(extension)].rstrip()
    return stem + extension


def _is_unwanted(ch: str) -> bool:
    # Cc covers C0, DEL and C1; Cs (lone surrogates, from undecodable bytes)
    # could never be stored or sent as UTF-8.
    return ch == "\x7f" or unicodedata.category(ch) in ("Cc", "Cs")


def required_text(raw: object, field: str, max_chars: int) -> str:
    """A body field that must be a non-empty string of at most ``max_chars``, stripped.

    Anything else is a 422 naming ``field``.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest.field("body", field, "must be a non-empty string")
    if len(raw) > max_chars:
        raise InvalidRequest.field("body", field, f"must be at most {max_chars} characters")
    return raw.strip()


def uuid_list(raw: object, field: str, limit: int) -> tuple[UUID, ...]:
    """A body field holding an array of at most ``limit`` UUID strings, each kept once in
    order; absent is empty. Anything else is a 422 naming ``field``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest.field("body", field, "must be an array of UUIDs")
    if len(raw) > limit:
        raise InvalidRequest.field("body", field, f"at most {limit} ids a request")
    out: list[UUID] = []
    for item in raw:
        try:
            if not isinstance(item, str):
                raise ValueError
            parsed = UUID(item)
        except ValueError:
            raise InvalidRequest.field("body", field, "must be an array of UUIDs") from None
        if parsed not in out:
            out.append(parsed)
    return tuple(out)


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    """The ``metadata`` form field as a JSON object, or None when it is absent or blank.

    Known keys are type-checked (``description`` a string, ``tags`` a list
    of strings, ``extra`` an object; null means absent); others are kept.
    """
    if raw is None or not raw.strip():
        return None
    try:
        value = load_json(raw)
    except JsonRefused:
        raise InvalidMetadata(_INVALID_JSON) from None
    if not isinstance(value, dict):
        raise InvalidMetadata(_INVALID_JSON)
    if "\\u0000" in raw and _holds_nul(value):
        # PostgreSQL's jsonb cannot hold U+0000; SQLite could, so refuse it on both.
        raise InvalidMetadata("metadata must not contain U+0000 (NUL) characters")
    description = value.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidMetadata("metadata.description must be a string")
    tags = value.get("tags")
    if tags is not None and not (
        isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
    ):
        raise InvalidMetadata("metadata.tags must be a list of strings")
    extra = value.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidMetadata("metadata.extra must be a JSON object")
    return value


class JsonRefused(ValueError):
    """JSON a client sent that is refused; the message says why, in a client's words."""


def load_json(raw: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``raw`` parsed as JSON (RFC 8259, UTF-8), or ``JsonRefused`` saying why not.

    A leading byte order mark is ignored, as RFC 8259 allows. Refused beyond
    the grammar: bytes that are not UTF-8; ``NaN`` and
    ``Infinity``; arrays and objects nested deeper than ``max_depth``; an
    integer outside ``MIN_JSON_INTEGER``..``MAX_JSON_INTEGER`` (so no
    integer of thousands of digits is ever converted); a number too large
    for a double; and a string or key holding a lone surrogate
    (``"\\ud800"``), which no UTF-8 answer, log line or database can hold.
    Every check after parsing runs in C over the text, so a large document
    costs about what parsing it does.
    """
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonRefused("JSON must be UTF-8") from None
    if _LONE_SURROGATE.search(text):
        raise _lone_surrogate()
    try:
        value = json.loads(
            text, parse_int=_bounded_integer, parse_float=_finite_number,
            parse_constant=_reject_constant,
        )
    except JsonRefused:
        raise
    except RecursionError:
        # The parser's own depth guard, met far beyond ``max_depth``: the
        # same refusal the depth check below gives a shallower document.
        raise _too_deep(max_depth) from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"{exc.msg} at character {exc.pos}") from None
    if _nesting_depth(text) > max_depth:
        raise _too_deep(max_depth)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _lone_surrogate() from None
    return value


def _bounded_integer(literal: str) -> int:
    if len(literal.lstrip("-")) > _MAX_INTEGER_DIGITS:
        raise JsonRefused("a JSON integer is out of range")
    value = int(literal)
    if not MIN_JSON_INTEGER <= value <= MAX_JSON_INTEGER:
        raise JsonRefused("a JSON integer is out of range")
    return value


def _finite_number(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonRefused("a JSON number is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON")


def _too_deep(max_depth: int) -> JsonRefused:
    return JsonRefused(f"JSON nested deeper than {max_depth} levels")


def _lone_surrogate() -> JsonRefused:
    return JsonRefused("a JSON string holds a lone surrogate")


def _nesting_depth(valid_json: str) -> int:
    """How deep arrays and objects nest in text already parsed as JSON.

    Only on valid JSON: there every quote outside a string opens one that
    closes, so dropping the strings is a single linear pass.
    """
    brackets = _BRACKET.findall(_JSON_STRING.sub("", valid_json))
    return max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets)), default=0)


def _holds_nul(value: Any) -> bool:
    """Whether any string or key of a parsed (and so already bounded) document has U+0000."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def normalize_mime(declared: str | None) -> str:
    """``Text/Plain; charset=utf-8`` → ``text/plain``; nothing declared → octet-stream."""
    if declared is None:
        return UNDECLARED_MIME
    mime = declared.split(";", 1)[0].strip().lower()
    return mime or UNDECLARED_MIME


@attrs.frozen
class IngestResult:
    """What the bytes of an accepted upload amount to."""

    sha256_hash: str
    size_bytes: int


class Ingest:
    """Counts, hashes and sniffs one upload's bytes as they arrive.

    Call ``feed`` for each chunk, then ``finish``. Memory stays constant:
    only the first few bytes are kept, and text is checked by an
    incremental UTF-8 decoder whose output is discarded.
    """

    def __init__(self, declared_mime: str | None, allowed: tuple[str, ...], max_bytes: int) -> None:
        self.mime_type = normalize_mime(declared_mime)
        self._allowed = allowed
        if self.mime_type not in {normalize_mime(item) for item in allowed}:
            raise InvalidFileType(f"File type {self.mime_type!r} is not allowed", allowed)
        self._max_bytes = max_bytes
        self._size = 0
        self._hash = hashlib.sha256()
        self._signature: tuple[bytes, str] | None = _signature_for(self.mime_type)
        self._head = b""
        self._utf8 = (
            codecs.getincrementaldecoder("utf-8")("strict") if self.mime_type == _TEXT else None
        )

    @property
    def size(self) -> int:
        return self._size

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk; raises as soon as the bytes so far break a rule."""
        if not chunk:
            return
        if self._signature is not None:
            self._check_signature(chunk)
        if self._utf8 is not None:
            try:
                self._utf8.decode(chunk, final=False)
            except UnicodeDecodeError:
                raise self._not_like("UTF-8 text") from None
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise FileTooLarge(self._max_bytes)
        self._hash.update(chunk)

    def finish(self) -> IngestResult:
        """The hash and size of everything fed; raises if the whole fails a rule."""
        if self._size == 0:
            raise EmptyFile()
        if self._signature is not None:
            raise self._not_like(self._signature[1])
        if self._utf8 is not None:
            try:
                self._utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                raise self._not_like("UTF-8 text") from None
        return IngestResult(sha256_hash=self._hash.hexdigest(), size_bytes=self._size)

    def _check_signature(self, chunk: bytes) -> None:
        assert self._signature is not None
        magic, label = self._signature
        self._head += chunk[: len(magic) - len(self._head)]
        if not magic.startswith(self._head):
            raise self._not_like(label)
        if len(self._head) == len(magic):
            self._signature = None  # matched; nothing more to check

    def _not_like(self, label: str) -> InvalidFileType:
        return InvalidFileType(
            f"The file content does not look like {label} (declared {self.mime_type})",
            self._allowed,
        )


def _signature_for(mime: str) -> tuple[bytes, str] | None:
    if mime.startswith(_OOXML_PREFIX):
        return _ZIP
    return _SIGNATURES.get(mime)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact name as RFC 5987 ``filename*``."""
    fallback = "".join(
        ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
