"""Ledger leaves: the contract's ``document-vault/leaf/v1`` text, read strictly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from vault.domain.leaf import Leaf, LeafKind, MalformedLeaf
from vault.domain.models import EntityType

DOC = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
ENTITY = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
AT = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)

EXPECTED = (
    b"document-vault/leaf/v1\n"
    b"kind registered\n"
    b"document 0f8fad5b-d9cb-469f-a165-70867728950e\n"
    b"entity issuer 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    b"sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    b"size 1024\n"
    b"time 2026-03-04T05:06:07.891Z\n"
)


def _leaf(**changes: object) -> Leaf:
    leaf = Leaf(
        kind=LeafKind.REGISTERED,
        document_id=DOC,
        entity_type=EntityType.ISSUER,
        entity_id=ENTITY,
        sha256=HASH,
        size=1024,
        time=AT,
    )
    return attrs.evolve(leaf, **changes) if changes else leaf


class TestEncode:
    def test_bytes_are_the_contract_layout(self) -> None:
        assert _leaf().encode() == EXPECTED

    def test_round_trip(self) -> None:
        """Parsing the bytes gives the leaf back, its time kept to the millisecond."""
        leaf = _leaf()
        assert leaf.time == AT.replace(microsecond=891000)
        assert Leaf.parse(leaf.encode()) == leaf

    @pytest.mark.parametrize("kind", list(LeafKind))
    @pytest.mark.parametrize("entity_type", list(EntityType))
    def test_every_kind_and_entity_type(self, kind: LeafKind, entity_type: EntityType) -> None:
        leaf = _leaf(kind=kind, entity_type=entity_type)
        assert Leaf.parse(leaf.encode()) == leaf

    def test_mismatch_without_hash(self) -> None:
        leaf = _leaf(kind=LeafKind.MISMATCH, sha256=None, size=0)
        assert b"\nsha256 none\nsize 0\n" in leaf.encode()
        assert Leaf.parse(leaf.encode()) == leaf

    def test_other_offsets_are_written_in_utc(self) -> None:
        moment = AT.astimezone(timezone(timedelta(hours=-5)))
        assert _leaf(time=moment).encode() == EXPECTED

    def test_constructor_refuses_bad_values(self) -> None:
        with pytest.raises(MalformedLeaf, match="none"):
            _leaf(sha256=None)
        with pytest.raises(MalformedLeaf, match="sha256"):
            _leaf(sha256=HASH.upper())
        with pytest.raises(MalformedLeaf, match="size"):
            _leaf(size=-1)
        with pytest.raises(MalformedLeaf, match="timezone"):
            _leaf(time=datetime(2026, 1, 1))


def _edit(old: bytes, new: bytes) -> bytes:
    assert old in EXPECTED
    return EXPECTED.replace(old, new)


MALFORMED = {
    "wrong header": _edit(b"leaf/v1", b"leaf/v2"),
    "unknown kind": _edit(b"kind registered", b"kind uploaded"),
    "kind in capitals": _edit(b"kind registered", b"kind Registered"),
    "trailing space": _edit(b"size 1024\n", b"size 1024 \n"),
    "double space": _edit(b"kind registered", b"kind  registered"),
    "CRLF": EXPECTED.replace(b"\n", b"\r\n"),
    "no final newline": EXPECTED[:-1],
    "extra line": EXPECTED + b"note x\n",
    "blank line at end": EXPECTED + b"\n",
    "missing line": _edit(b"size 1024\n", b""),
    "fields swapped": _edit(
        b"sha256 " + HASH.encode() + b"\nsize 1024\n",
        b"size 1024\nsha256 " + HASH.encode() + b"\n",
    ),
    "uppercase document uuid": _edit(b"0f8fad5b-d9cb", b"0F8FAD5B-D9CB"),
    "uuid without hyphens": _edit(
        b"0f8fad5b-d9cb-469f-a165-70867728950e", b"0f8fad5bd9cb469fa16570867728950e"
    ),
    "braced uuid": _edit(
        b"0f8fad5b-d9cb-469f-a165-70867728950e", b"{0f8fad5b-d9cb-469f-a165-70867728950e}"
    ),
    "unknown entity type": _edit(b"entity issuer", b"entity fund"),
    "entity without id": _edit(b" 7c9e6679-7425-40de-944b-e07fc1f90ae7", b""),
    "bad entity uuid": _edit(b"7c9e6679-7425", b"7c9e6679-742z"),
    "uppercase hash": _edit(HASH.encode(), HASH.upper().encode()),
    "short hash": _edit(HASH.encode(), HASH[:-1].encode()),
    "none for registered": _edit(HASH.encode(), b"none"),
    "leading zero size": _edit(b"size 1024", b"size 01024"),
    "signed size": _edit(b"size 1024", b"size +1024"),
    "empty size": _edit(b"size 1024", b"size "),
    "time without milliseconds": _edit(b"07.891Z", b"07Z"),
    "time with microseconds": _edit(b"07.891Z", b"07.891234Z"),
    "time with offset": _edit(b"07.891Z", b"07.891+00:00"),
    "time lowercase z": _edit(b"07.891Z", b"07.891z"),
    "time with space": _edit(b"2026-03-04T05", b"2026-03-04 05"),
    "impossible date": _edit(b"2026-03-04", b"2026-02-30"),
    "not UTF-8": _edit(b"kind registered", b"kind \xff"),
}


class TestParse:
    @pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
    def test_malformed_refused(self, data: bytes) -> None:
        with pytest.raises(MalformedLeaf):
            Leaf.parse(data)

    def test_none_for_mismatch_only(self) -> None:
        data = _edit(b"kind registered", b"kind mismatch").replace(HASH.encode(), b"none")
        assert Leaf.parse(data).sha256 is None

    def test_error_is_value_error(self) -> None:
        assert issubclass(MalformedLeaf, ValueError)
