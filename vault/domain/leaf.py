"""The ledger's leaves: one ``document-vault/leaf/v1`` text per document change.

A leaf is UTF-8 text, these fields in this order, every line (the last too)
ending in LF, no trailing spaces::

    document-vault/leaf/v1
    kind <registered|verified|mismatch|archived|disposed>
    document <document uuid>
    entity <entity_type> <entity uuid>
    sha256 <64 lowercase hex; for mismatch, the calculated hash or "none">
    size <size_bytes>
    time <UTC, RFC 3339 with milliseconds and Z>

``Leaf.parse`` accepts exactly the bytes ``Leaf.encode`` writes for the same
values (canonical UUIDs, decimal without leading zeros), so a leaf read from
the log and encoded again hashes the same. A leaf's time is kept to the
millisecond, as written. Errors are ``MalformedLeaf`` (a ``ValueError``)
naming the field that is wrong.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from uuid import UUID

import attrs

from vault.domain.models import EntityType, iso_event

LEAF_HEADER = "document-vault/leaf/v1"
NO_HASH = "none"
"""The ``sha256`` of a mismatch whose file could not be hashed."""

_HEX = frozenset("0123456789abcdef")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_DIGITS = frozenset("0123456789")
_ENTITY_TYPES = {t.value: t for t in EntityType}


class MalformedLeaf(ValueError):
    """A leaf's text, or a field given to ``Leaf``, is not what the format allows."""


class LeafKind(enum.StrEnum):
    REGISTERED = "registered"
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    ARCHIVED = "archived"
    DISPOSED = "disposed"


_KINDS = {k.value: k for k in LeafKind}


def _to_millisecond(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedLeaf("leaf time must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in _HEX for c in value)


def _check_leaf(leaf: Leaf) -> None:
    if leaf.sha256 is None:
        if leaf.kind is not LeafKind.MISMATCH:
            raise MalformedLeaf('leaf sha256 may be "none" only for a mismatch')
    elif not _is_sha256(leaf.sha256):
        raise MalformedLeaf("leaf sha256 is not 64 lowercase hex digits")
    if leaf.size < 0:
        raise MalformedLeaf("leaf size is negative")


def _parse_uuid(text: str, what: str) -> UUID:
    try:
        value = UUID(text)
    except ValueError:
        value = None
    if value is None or str(value) != text:
        raise MalformedLeaf(f"leaf {what} is not a lowercase hyphenated UUID")
    return value


@attrs.frozen
class Leaf:
    """One document change as the log records it."""

    kind: LeafKind
    document_id: UUID
    entity_type: EntityType
    entity_id: UUID
    sha256: str | None
    """The recorded hash; for a mismatch the calculated one, ``None`` for ``none``."""
    size: int
    time: datetime = attrs.field(converter=_to_millisecond)

    def __attrs_post_init__(self) -> None:
        _check_leaf(self)

    def encode(self) -> bytes:
        lines = (
            LEAF_HEADER,
            f"kind {self.kind.value}",
            f"document {self.document_id}",
            f"entity {self.entity_type.value} {self.entity_id}",
            f"sha256 {NO_HASH if self.sha256 is None else self.sha256}",
            f"size {self.size}",
            f"time {iso_event(self.time)}",
        )
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> Leaf:
        """A leaf's bytes; ``MalformedLeaf`` naming the first field that is wrong."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedLeaf("leaf is not valid UTF-8") from None
        if not text.endswith("\n"):
            raise MalformedLeaf("leaf does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 7:
            raise MalformedLeaf("leaf does not have exactly seven lines")
        if lines[0] != LEAF_HEADER:
            raise MalformedLeaf(f"leaf does not start with {LEAF_HEADER}")
        fields = []
        for line, name in zip(
            lines[1:], ("kind", "document", "entity", "sha256", "size", "time"), strict=True
        ):
            if not line.startswith(name + " "):
                raise MalformedLeaf(f"leaf line is not the {name} field")
            fields.append(line[len(name) + 1:])
        kind_text, document_text, entity_text, hash_text, size_text, time_text = fields

        kind = _KINDS.get(kind_text)
        if kind is None:
            raise MalformedLeaf("leaf kind is not a known kind")
        document_id = _parse_uuid(document_text, "document")
        type_text, _, entity_id_text = entity_text.partition(" ")
        entity_type = _ENTITY_TYPES.get(type_text)
        if entity_type is None:
            raise MalformedLeaf("leaf entity type is not a known entity type")
        entity_id = _parse_uuid(entity_id_text, "entity id")
        if hash_text == NO_HASH and kind is LeafKind.MISMATCH:
            sha256 = None
        elif _is_sha256(hash_text):
            sha256 = hash_text
        else:
            raise MalformedLeaf("leaf sha256 is not 64 lowercase hex digits")
        if (
            not size_text
            or any(c not in _DIGITS for c in size_text)
            or (size_text[0] == "0" and size_text != "0")
        ):
            raise MalformedLeaf("leaf size is not a decimal without leading zeros")
        if not _TIME.fullmatch(time_text):
            raise MalformedLeaf("leaf time is not RFC 3339 UTC with milliseconds and Z")
        try:
            moment = datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise MalformedLeaf("leaf time is not a valid date and time") from None
        return cls(
            kind=kind,
            document_id=document_id,
            entity_type=entity_type,
            entity_id=entity_id,
            sha256=sha256,
            size=int(size_text),
            time=moment,
        )
