"""The ledger's hash chain: each entry commits to its predecessor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import attrs

from vault.domain.ledger import (
    GENESIS_HASH,
    entry_hash_from_reference,
    entry_is_consistent,
    next_entry,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)


class TestChain:
    def test_first_entry_links_to_genesis(self) -> None:
        """The first entry has seq 1 and the all-zero predecessor hash."""
        first = next_entry(None, uuid.uuid4(), "a" * 64, AT)
        assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
        assert entry_is_consistent(first, None)

    def test_entries_link(self) -> None:
        """Each entry names its predecessor's hash and checks out against it."""
        first = next_entry(None, uuid.uuid4(), "a" * 64, AT)
        second = next_entry(first, uuid.uuid4(), "b" * 64, AT)
        assert second.prev_hash == first.entry_hash and second.seq == 2
        assert entry_is_consistent(second, first)

    def test_rewritten_hash_breaks_the_entry(self) -> None:
        """Changing the registered content hash no longer matches the entry hash."""
        entry = next_entry(None, uuid.uuid4(), "a" * 64, AT)
        forged = attrs.evolve(entry, sha256_hash="f" * 64)
        assert not entry_is_consistent(forged, None)

    def test_rewritten_predecessor_breaks_the_link(self) -> None:
        """A predecessor whose hash changed no longer links to its successor."""
        first = next_entry(None, uuid.uuid4(), "a" * 64, AT)
        second = next_entry(first, uuid.uuid4(), "b" * 64, AT)
        forged_first = next_entry(None, uuid.uuid4(), "c" * 64, AT)
        assert not entry_is_consistent(second, forged_first)


class TestReferences:
    def test_reference_round_trip(self) -> None:
        """A document's reference names its entry's hash."""
        entry = next_entry(None, uuid.uuid4(), "a" * 64, AT)
        assert entry_hash_from_reference(entry.reference) == entry.entry_hash

    def test_malformed_reference(self) -> None:
        """Anything but 0x plus 64 lowercase hex digits names no entry."""
        for bad in ("", "0x", "0x" + "g" * 64, "tx-123", "0x" + "A" * 64):
            assert entry_hash_from_reference(bad) is None
