"""The log's checkpoints outside the vault, in the metadata store (schema 3), on SQLite
and PostgreSQL alike: witnesses' cosignatures, published checkpoints, anchor jobs
claimed under a lease and finished once, and the database refusing every rewrite;
and a database of schema 2 migrating to it."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
from psycopg import sql

from tests.pg import PgDatabase, with_database
from tests.vault.conftest import STORE_BACKENDS
from tests.vault.store_helpers import BASE, StoreBackend, integrate_all, race
from vault.adapters.stores import (
    integrity_schema,
    outside_schema,
    postgres_schema,
    sqlite_schema,
)
from vault.adapters.stores import sqlite as sqlite_module
from vault.adapters.stores.postgres import PostgresMetadataStore
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.log import SignedCheckpoint
from vault.domain.publication import (
    AnchorJob,
    AnchorKind,
    AnchorState,
    PublishedCheckpoint,
    StoredAnchor,
)
from vault.ports import MetadataStore

RFC = AnchorKind.RFC3161
EVM = AnchorKind.EVM
LEASE = 30.0
FIXTURES = Path(__file__).with_name("fixtures")
TOKEN = bytes(range(256)) + b"\x00\xff"
"""A timestamp token's bytes: every byte value, NULs and high bytes included."""


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def note(size: int) -> str:
    return f"vault.test/log\n{size}\nroot-{size}\n\n— sig-{size}\n"


def checkpoint(store: MetadataStore, size: int) -> None:
    store.add_checkpoint(SignedCheckpoint(size, bytes([size % 256]) * 32, note(size), at(size)))


def rfc_anchor(size: int, **changes: Any) -> StoredAnchor:
    anchor = StoredAnchor(
        kind=RFC, size=size, note=note(size), anchored_at=at(1000 + size), token=TOKEN
    )
    return attrs.evolve(anchor, **changes)


def evm_anchor(size: int, **changes: Any) -> StoredAnchor:
    anchor = StoredAnchor(
        kind=EVM,
        size=size,
        note=note(size),
        anchored_at=at(2000 + size),
        chain_id=11155111,
        tx_hash="0x" + f"{size:02x}" * 32,
        block_number=2**40 + size,
        block_hash="0x" + "bc" * 32,
    )
    return attrs.evolve(anchor, **changes)


def done(store: MetadataStore, anchor: StoredAnchor) -> None:
    """Schedule and finish ``anchor`` (its checkpoint already added)."""
    store.schedule_anchor(anchor.kind, anchor.size, at(anchor.size))
    store.finish_anchor(anchor)


def covering(store: MetadataStore, index: int) -> dict[AnchorKind, StoredAnchor]:
    found = store.anchors_covering(index)
    assert len({a.kind for a in found}) == len(found), found  # one a kind
    return {a.kind: a for a in found}


# -- cosignatures -------------------------------------------------------------


class TestCosignatures:
    def test_kept_once_per_witness_and_size(self, store: MetadataStore) -> None:
        """A second copy of a witness's cosignature on one size is ignored."""
        assert store.cosignatures_at(5) == {}
        store.add_cosignature("w1", 5, "— w1 first\n", at(1))
        store.add_cosignature("w1", 5, "— w1 again\n", at(2))
        store.add_cosignature("w2", 5, "— w2 on 5\n", at(3))
        store.add_cosignature("w1", 9, "— w1 on 9\n", at(4))

        assert store.cosignatures_at(5) == {"w1": "— w1 first\n", "w2": "— w2 on 5\n"}
        assert store.cosignatures_at(9) == {"w1": "— w1 on 9\n"}
        assert store.cosignatures_at(7) == {}

    def test_witness_sizes_are_the_largest_each_cosigned(self, store: MetadataStore) -> None:
        assert store.witness_sizes() == {}
        store.add_cosignature("w1", 9, "a\n", at(1))
        store.add_cosignature("w1", 3, "b\n", at(2))  # an older size heard late
        store.add_cosignature("w2", 4, "c\n", at(3))
        store.add_cosignature("w3", 2**40, "d\n", at(4))
        store.add_cosignature("w2", 12, "e\n", at(5))

        assert store.witness_sizes() == {"w1": 9, "w2": 12, "w3": 2**40}

    def test_a_store_instance_sees_another_ones_cosignatures(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        other = store_backend.open_store()
        other.add_cosignature("w1", 5, "— from another process\n", at(1))
        store.add_cosignature("w1", 5, "— mine\n", at(2))

        assert store.cosignatures_at(5) == {"w1": "— from another process\n"}


# -- published checkpoints ----------------------------------------------------


class TestPublished:
    def test_kept_once_a_size_and_the_latest_is_the_largest(self, store: MetadataStore) -> None:
        assert store.latest_published() is None
        assert store.published_at(3) is None
        store.publish_checkpoint(3, note(3) + "— w1\n", at(1))
        store.publish_checkpoint(9, note(9) + "— w1\n", at(2))
        store.publish_checkpoint(5, note(5), at(3))  # published late, smaller
        store.publish_checkpoint(9, "forged\n", at(4))

        assert store.latest_published() == PublishedCheckpoint(9, note(9) + "— w1\n", at(2))
        assert store.published_at(3) == PublishedCheckpoint(3, note(3) + "— w1\n", at(1))
        assert store.published_at(5) == PublishedCheckpoint(5, note(5), at(3))
        assert store.published_at(4) is None

    def test_published_at_is_utc_whatever_zone_it_was_given_in(self, store: MetadataStore) -> None:
        zoned = at(7).astimezone(timezone(timedelta(hours=5, minutes=30)))
        store.publish_checkpoint(1, note(1), zoned)

        published = store.published_at(1)
        assert published is not None
        assert published.published_at == at(7)
        assert published.published_at.utcoffset() == timedelta(0)


# -- anchors --------------------------------------------------------------------


class TestSchedule:
    def test_once_a_kind_and_size(self, store: MetadataStore) -> None:
        assert store.last_anchor(RFC) is None
        assert store.schedule_anchor(RFC, 5, at(1)) is True
        assert store.schedule_anchor(RFC, 5, at(2)) is False

        assert store.last_anchor(RFC) == AnchorJob(RFC, 5, AnchorState.PENDING, at(1))
        assert store.last_anchor(EVM) is None
        assert store.schedule_anchor(EVM, 5, at(3)) is True  # kinds are independent
        assert store.last_anchor(EVM) == AnchorJob(EVM, 5, AnchorState.PENDING, at(3))

    def test_the_last_is_the_largest_size_of_its_kind(self, store: MetadataStore) -> None:
        store.schedule_anchor(RFC, 9, at(1))
        store.schedule_anchor(RFC, 3, at(2))
        store.schedule_anchor(EVM, 4, at(3))
        store.schedule_anchor(EVM, 2**40, at(4))
        store.schedule_anchor(RFC, 7, at(5))

        last_rfc, last_evm = store.last_anchor(RFC), store.last_anchor(EVM)
        assert last_rfc is not None and last_evm is not None
        assert (last_rfc.size, last_rfc.created_at) == (9, at(1))
        assert (last_evm.size, last_evm.created_at) == (2**40, at(4))

    def test_the_last_may_be_done(self, store: MetadataStore) -> None:
        checkpoint(store, 4)
        done(store, rfc_anchor(4))
        store.schedule_anchor(RFC, 2, at(9))

        last = store.last_anchor(RFC)
        assert last is not None
        assert (last.size, last.state) == (4, AnchorState.DONE)


class TestClaim:
    def test_the_oldest_unfinished_job_is_leased(self, store: MetadataStore) -> None:
        """Claims take the smallest size first; a leased job is skipped until its lease
        runs out (at exactly ``now + lease``); kinds are claimed separately."""
        store.schedule_anchor(RFC, 9, at(2))  # written first, but the newer checkpoint
        store.schedule_anchor(RFC, 3, at(1))
        store.schedule_anchor(EVM, 5, at(3))
        now = at(100)

        first = store.claim_anchor(RFC, now, LEASE)
        assert first == AnchorJob(RFC, 3, AnchorState.PENDING, at(1))
        second = store.claim_anchor(RFC, now, LEASE)
        assert second is not None and second.size == 9
        assert store.claim_anchor(RFC, now, LEASE) is None
        assert store.claim_anchor(RFC, now + timedelta(seconds=LEASE - 1e-6), LEASE) is None

        evm = store.claim_anchor(EVM, now, LEASE)
        assert evm is not None and evm.size == 5

        again = store.claim_anchor(RFC, now + timedelta(seconds=LEASE), LEASE)
        assert again is not None and again.size == 3

    def test_a_single_job_is_claimed_once_until_its_lease_runs_out(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        store.schedule_anchor(EVM, 7, at(0))
        other = store_backend.open_store()
        now = at(50)

        assert store.claim_anchor(EVM, now, LEASE) is not None
        assert store.claim_anchor(EVM, now, LEASE) is None
        assert other.claim_anchor(EVM, now, LEASE) is None  # another process, too
        assert other.claim_anchor(EVM, now + timedelta(seconds=LEASE), 5) is not None
        assert store.claim_anchor(EVM, now + timedelta(seconds=LEASE + 4), LEASE) is None
        assert store.claim_anchor(EVM, now + timedelta(seconds=LEASE + 5), LEASE) is not None

    def test_nothing_to_claim(self, store: MetadataStore) -> None:
        assert store.claim_anchor(RFC, at(0), LEASE) is None
        store.schedule_anchor(EVM, 1, at(0))
        assert store.claim_anchor(RFC, at(0), LEASE) is None

    def test_a_lease_in_another_zone_compares_as_the_same_instant(
        self, store: MetadataStore
    ) -> None:
        """Leases compare instants, not text: a ``now`` given at +05:30 or -08:00 counts
        as the UTC instant it is."""

        east, west = timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))
        store.schedule_anchor(RFC, 1, at(0))

        assert store.claim_anchor(RFC, at(100).astimezone(east), LEASE) is not None
        assert store.claim_anchor(RFC, at(100 + LEASE - 1).astimezone(west), LEASE) is None
        assert store.claim_anchor(RFC, at(100 + LEASE).astimezone(west), LEASE) is not None


class TestSave:
    def test_progress_round_trips(self, store: MetadataStore) -> None:
        """state, attempts, last_error, tx_hash, nonce and raw_tx come back as written."""
        store.schedule_anchor(EVM, 4, at(0))
        job = store.claim_anchor(EVM, at(10), LEASE)
        assert job is not None
        sent = attrs.evolve(
            job,
            state=AnchorState.SENT,
            attempts=2,
            last_error="nonce too low: é",
            tx_hash="0x" + "ab" * 32,
            nonce=2**40 + 1,
            raw_tx="0x02f8" + "cd" * 100,
        )

        store.save_anchor(sent, None)

        assert store.last_anchor(EVM) == sent
        assert store.claim_anchor(EVM, at(10), LEASE) == sent  # None frees it at once

        cleared = attrs.evolve(
            sent,
            state=AnchorState.PENDING,
            attempts=3,
            last_error=None,
            tx_hash=None,
            nonce=None,
            raw_tx=None,
        )
        store.save_anchor(cleared, None)
        assert store.last_anchor(EVM) == cleared
        assert cleared.created_at == at(0)

    def test_a_retry_time_hides_the_job_until_then(self, store: MetadataStore) -> None:
        store.schedule_anchor(RFC, 4, at(0))
        job = store.claim_anchor(RFC, at(10), LEASE)
        assert job is not None
        failed = attrs.evolve(job, attempts=1, last_error="tsa: 503")

        store.save_anchor(failed, at(500))  # past the claim's own lease

        assert store.claim_anchor(RFC, at(10 + LEASE), LEASE) is None
        assert store.claim_anchor(RFC, at(499), LEASE) is None
        assert store.claim_anchor(RFC, at(500), LEASE) == failed

    def test_a_retry_time_sooner_than_the_lease_shortens_it(self, store: MetadataStore) -> None:
        store.schedule_anchor(RFC, 4, at(0))
        job = store.claim_anchor(RFC, at(10), LEASE)
        assert job is not None

        store.save_anchor(attrs.evolve(job, attempts=1), at(12))

        assert store.claim_anchor(RFC, at(11), LEASE) is None
        reclaimed = store.claim_anchor(RFC, at(12), LEASE)
        assert reclaimed is not None and reclaimed.attempts == 1

    def test_an_unknown_job_changes_nothing(self, store: MetadataStore) -> None:
        store.schedule_anchor(RFC, 4, at(0))
        before = store.last_anchor(RFC)
        assert before is not None

        store.save_anchor(attrs.evolve(before, size=5, attempts=7), None)
        store.save_anchor(attrs.evolve(before, kind=EVM, attempts=7), None)

        assert store.last_anchor(RFC) == before
        assert store.last_anchor(EVM) is None


class TestFinish:
    def test_a_done_job_is_never_claimed_and_never_changes(self, store: MetadataStore) -> None:
        checkpoint(store, 6)
        store.schedule_anchor(RFC, 6, at(0))
        job = store.claim_anchor(RFC, at(10), LEASE)
        assert job is not None
        store.save_anchor(attrs.evolve(job, attempts=2, last_error="tsa: timeout"), None)

        store.finish_anchor(rfc_anchor(6))

        assert store.claim_anchor(RFC, at(10), LEASE) is None
        assert store.claim_anchor(RFC, at(10_000), LEASE) is None
        finished = store.last_anchor(RFC)
        assert finished == AnchorJob(RFC, 6, AnchorState.DONE, at(0), attempts=2)
        assert store.newest_anchor(RFC) == rfc_anchor(6)

        store.save_anchor(attrs.evolve(job, state=AnchorState.PENDING, attempts=9), None)
        store.save_anchor(attrs.evolve(job, state=AnchorState.SENT, last_error="x"), at(1))
        store.finish_anchor(rfc_anchor(6, token=b"forged", anchored_at=at(1)))

        assert store.last_anchor(RFC) == finished
        assert store.newest_anchor(RFC) == rfc_anchor(6)
        assert store.claim_anchor(RFC, at(10_000), LEASE) is None

    def test_a_leased_job_may_be_finished(self, store: MetadataStore) -> None:
        """Finishing hands the lease back with the job: nothing is left to claim."""
        checkpoint(store, 2)
        store.schedule_anchor(EVM, 2, at(0))
        job = store.claim_anchor(EVM, at(1), LEASE)
        assert job is not None
        store.save_anchor(
            attrs.evolve(job, state=AnchorState.SENT, tx_hash="0x" + "02" * 32, nonce=4),
            at(1000),
        )

        store.finish_anchor(evm_anchor(2))

        assert store.newest_anchor(EVM) == evm_anchor(2)
        last = store.last_anchor(EVM)
        assert last is not None
        assert (last.state, last.last_error, last.nonce) == (AnchorState.DONE, None, 4)
        assert last.tx_hash == evm_anchor(2).tx_hash

    def test_both_kinds_round_trip(self, store: MetadataStore) -> None:
        """A token's bytes; a chain's id, transaction, block number and hash."""
        checkpoint(store, 8)
        done(store, rfc_anchor(8))
        done(store, evm_anchor(8))

        rfc, evm = store.newest_anchor(RFC), store.newest_anchor(EVM)
        assert rfc == rfc_anchor(8)
        assert rfc is not None and type(rfc.token) is bytes
        assert (rfc.chain_id, rfc.tx_hash, rfc.block_number, rfc.block_hash) == (None,) * 4
        assert evm == evm_anchor(8)
        assert evm is not None and evm.token is None
        assert evm.anchored_at.utcoffset() == timedelta(0)


class TestCovering:
    @pytest.fixture
    def anchored(self, store: MetadataStore) -> MetadataStore:
        """Checkpoints 3, 9, 20; RFC 3161 done at 3 and 9, pending at 20; EVM pending
        at 9, done at 20."""
        for size in (3, 9, 20):
            checkpoint(store, size)
        done(store, rfc_anchor(3))
        done(store, rfc_anchor(9))
        store.schedule_anchor(RFC, 20, at(20))
        store.schedule_anchor(EVM, 9, at(9))
        done(store, evm_anchor(20))
        return store

    @pytest.mark.parametrize(
        ("index", "rfc", "evm"),
        [(0, 3, 20), (2, 3, 20), (3, 9, 20), (8, 9, 20), (9, None, 20), (19, None, 20)],
    )
    def test_per_kind_the_smallest_done_anchor_holding_the_leaf(
        self, anchored: MetadataStore, index: int, rfc: int | None, evm: int | None
    ) -> None:
        """A leaf of index i is in a checkpoint of size > i; unfinished jobs don't count."""
        expected = {EVM: evm_anchor(evm) if evm is not None else None}
        expected[RFC] = rfc_anchor(rfc) if rfc is not None else None
        assert covering(anchored, index) == {k: v for k, v in expected.items() if v}

    def test_none_past_the_last(self, anchored: MetadataStore) -> None:
        assert anchored.anchors_covering(20) == []
        assert anchored.anchors_covering(2**40) == []

    def test_in_the_order_of_their_kinds(self, anchored: MetadataStore) -> None:
        assert [a.kind for a in anchored.anchors_covering(0)] == sorted([RFC, EVM])

    def test_newest_per_kind_ignores_unfinished_jobs(self, anchored: MetadataStore) -> None:
        assert anchored.newest_anchor(RFC) == rfc_anchor(9)
        assert anchored.newest_anchor(EVM) == evm_anchor(20)

    def test_nothing_done_yet(self, store: MetadataStore) -> None:
        checkpoint(store, 3)
        store.schedule_anchor(RFC, 3, at(0))
        assert store.anchors_covering(0) == []
        assert store.newest_anchor(RFC) is None
        assert store.newest_anchor(EVM) is None

    def test_finishing_later_changes_what_covers(self, anchored: MetadataStore) -> None:
        """The EVM job at 9, finished after the one at 20, now covers leaves below 9."""
        job = anchored.claim_anchor(EVM, at(100), LEASE)
        assert job is not None and job.size == 9
        anchored.finish_anchor(evm_anchor(9))

        assert covering(anchored, 8)[EVM] == evm_anchor(9)
        assert covering(anchored, 9)[EVM] == evm_anchor(20)
        assert anchored.newest_anchor(EVM) == evm_anchor(20)


# -- the database refuses rewrites ---------------------------------------------


def _snapshot(store: MetadataStore) -> tuple[object, ...]:
    return (
        store.cosignatures_at(3),
        store.cosignatures_at(9),
        store.witness_sizes(),
        store.latest_published(),
        store.published_at(3),
        store.last_anchor(RFC),
        store.last_anchor(EVM),
        store.newest_anchor(RFC),
        store.newest_anchor(EVM),
        store.anchors_covering(0),
        store.anchors_covering(3),
    )


@pytest.fixture
def outside(store: MetadataStore) -> MetadataStore:
    """Two witnesses' cosignatures, two published checkpoints; RFC 3161 done at 3
    and pending at 9, EVM sent (saved, lease handed back) at 3."""
    for size in (3, 9):
        checkpoint(store, size)
        store.add_cosignature("w1", size, f"— w1 {size}\n", at(size))
        store.add_cosignature("w2", size, f"— w2 {size}\n", at(size))
        store.publish_checkpoint(size, note(size) + f"— w1 {size}\n", at(size))
    done(store, rfc_anchor(3))
    store.schedule_anchor(RFC, 9, at(9))
    store.schedule_anchor(EVM, 3, at(3))
    job = store.claim_anchor(EVM, at(4), LEASE)
    assert job is not None
    store.save_anchor(
        attrs.evolve(job, state=AnchorState.SENT, tx_hash="0x" + "33" * 32, nonce=1), None
    )
    return store


_REFUSED = [
    ("UPDATE ledger_cosignatures SET line = 'forged'", "append-only"),
    ("UPDATE ledger_cosignatures SET size = size + 100 WHERE witness = 'w1'", "append-only"),
    ("UPDATE ledger_cosignatures SET cosigned_at = cosigned_at WHERE size = 3", "append-only"),
    ("DELETE FROM ledger_cosignatures", "append-only"),
    ("DELETE FROM ledger_cosignatures WHERE witness = 'w2' AND size = 9", "append-only"),
    ("UPDATE ledger_published SET note = 'forged'", "append-only"),
    ("UPDATE ledger_published SET size = 4 WHERE size = 3", "append-only"),
    ("DELETE FROM ledger_published", "append-only"),
    ("DELETE FROM ledger_published WHERE size = 9", "append-only"),
    ("UPDATE ledger_anchors SET token = ? WHERE state = 'done'", "never changes"),
    ("UPDATE ledger_anchors SET state = 'pending' WHERE state = 'done'", "never changes"),
    ("UPDATE ledger_anchors SET anchored_at = NULL WHERE state = 'done'", "never changes"),
    ("UPDATE ledger_anchors SET leased_until = NULL WHERE state = 'done'", "never changes"),
    ("UPDATE ledger_anchors SET size = 99 WHERE state = 'pending'", "never changes"),
    ("UPDATE ledger_anchors SET kind = 'evm' WHERE kind = 'rfc3161' AND size = 9",
     "never changes"),
    ("DELETE FROM ledger_anchors WHERE state = 'done'", "deleted"),
    ("DELETE FROM ledger_anchors WHERE state = 'pending'", "deleted"),
    ("DELETE FROM ledger_anchors WHERE state = 'sent'", "deleted"),
    ("DELETE FROM ledger_anchors", "deleted"),
    # An upsert's update runs the update triggers on PostgreSQL; SQLite drops
    # an insert meeting an existing key before it gets there (the no_replace
    # triggers), so there it changes nothing without an error.
    ("INSERT INTO ledger_cosignatures (witness, size, line, cosigned_at)"
     " VALUES ('w1', 3, 'forged', '2025-01-01T00:00:00+00:00')"
     " ON CONFLICT (witness, size) DO UPDATE SET line = excluded.line", "append-only"),
    ("INSERT INTO ledger_published (size, note, published_at)"
     " VALUES (3, 'forged', '2025-01-01T00:00:00+00:00')"
     " ON CONFLICT (size) DO UPDATE SET note = excluded.note", "append-only"),
    ("INSERT INTO ledger_anchors (kind, size, state, created_at)"
     " VALUES ('rfc3161', 3, 'pending', '2025-01-01T00:00:00+00:00')"
     " ON CONFLICT (kind, size) DO UPDATE SET state = excluded.state", "never changes"),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "message"), _REFUSED)
def test_the_database_refuses_every_rewrite(
    outside: MetadataStore, store_backend: StoreBackend, statement: str, message: str
) -> None:
    """Through another session: cosignatures and publications only grow; a done anchor
    never changes, an unfinished one keeps its kind and size, and none is deleted."""
    before = _snapshot(outside)
    params = [b"forged"] if "?" in statement else []

    if "ON CONFLICT" in statement and store_backend.name == "sqlite":
        store_backend.execute(statement, params)
    else:
        with pytest.raises(store_backend.driver_error, match=message):
            store_backend.execute(statement, params)

    assert _snapshot(outside) == before


def test_an_unfinished_anchor_may_change_through_any_session(
    outside: MetadataStore, store_backend: StoreBackend
) -> None:
    """The trigger lets a job progress, as save_anchor and finish_anchor need."""
    store_backend.execute(
        "UPDATE ledger_anchors SET attempts = 5, last_error = 'by hand'"
        " WHERE kind = 'rfc3161' AND size = 9",
        [],
    )
    last = outside.last_anchor(RFC)
    assert last is not None and (last.attempts, last.last_error) == (5, "by hand")


@pytest.fixture
def sqlite_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    with STORE_BACKENDS["sqlite"](request) as backend:
        yield backend


_REPLACED = [
    "INSERT OR REPLACE INTO ledger_cosignatures (witness, size, line, cosigned_at)"
    " VALUES ('w1', 3, 'forged', '2025-01-01T00:00:00.000000+00:00')",
    "REPLACE INTO ledger_published (size, note, published_at)"
    " VALUES (3, 'forged', '2025-01-01T00:00:00.000000+00:00')",
    "INSERT OR REPLACE INTO ledger_anchors (kind, size, state, created_at, token, anchored_at)"
    " VALUES ('rfc3161', 3, 'done', '2025-01-01T00:00:00.000000+00:00', x'666f72676564',"
    " '2025-01-01T00:00:00.000000+00:00')",
]


@pytest.mark.parametrize("statement", _REPLACED)
def test_sqlite_refuses_a_replacing_insert(sqlite_backend: StoreBackend, statement: str) -> None:
    """``INSERT OR REPLACE`` is a delete and an insert: refused, or ignored, but the old
    row stays."""
    store = sqlite_backend.open_store()
    checkpoint(store, 3)
    store.add_cosignature("w1", 3, "— w1\n", at(1))
    store.publish_checkpoint(3, note(3), at(1))
    done(store, rfc_anchor(3))
    before = _snapshot(store)

    with contextlib.suppress(sqlite_backend.driver_error):
        sqlite_backend.execute(statement, [])

    assert _snapshot(store) == before


@pytest.mark.parametrize("table", ["ledger_cosignatures", "ledger_published", "ledger_anchors"])
def test_postgres_refuses_truncate(pg_backend: StoreBackend, table: str) -> None:
    store = pg_backend.open_store()
    checkpoint(store, 3)
    store.add_cosignature("w1", 3, "— w1\n", at(1))
    store.publish_checkpoint(3, note(3), at(1))
    store.schedule_anchor(RFC, 3, at(1))  # unfinished, too
    before = _snapshot(store)

    with pytest.raises(pg_backend.driver_error, match=r"append-only|never changes"):
        pg_backend.execute(f"TRUNCATE {table}", [])

    assert _snapshot(store) == before


# -- concurrency ------------------------------------------------------------------


def test_racing_claims_lease_a_job_once(store_backend: StoreBackend) -> None:
    """Eight store instances (as eight processes) claiming one job at once: one gets it.
    Five rounds, each job finished before the next is scheduled."""
    stores = [store_backend.open_store() for _ in range(8)]
    for round_ in range(5):
        size = round_ + 1
        checkpoint(stores[0], size)
        assert stores[0].schedule_anchor(EVM, size, at(size))
        now = at(100 * size)

        outcomes = race([partial(s.claim_anchor, EVM, now, LEASE) for s in stores])

        won = [o for o in outcomes if o is not None]
        assert len(won) == 1, outcomes
        assert isinstance(won[0], AnchorJob) and won[0].size == size
        stores[round_ % 8].finish_anchor(evm_anchor(size))
    assert [a.size for a in stores[7].anchors_covering(0)] == [1]


def test_racing_claims_never_give_one_job_twice(store_backend: StoreBackend) -> None:
    """Eight claimers over three jobs: each job goes to at most one of them."""
    stores = [store_backend.open_store() for _ in range(8)]
    for size in (1, 2, 3):
        stores[0].schedule_anchor(RFC, size, at(size))

    outcomes = race([partial(s.claim_anchor, RFC, at(50), LEASE) for s in stores])

    sizes = [o.size for o in outcomes if isinstance(o, AnchorJob)]
    assert len(sizes) == len(set(sizes)) >= 1
    assert all(o is None or isinstance(o, AnchorJob) for o in outcomes)


# -- migration from schema 2 --------------------------------------------------------

NEW_TABLES = {"ledger_cosignatures", "ledger_published", "ledger_anchors"}


@attrs.frozen
class OldDatabase:
    """A database the release of schema 2 made (from release 1's dump, migrated by
    schema 2's DDL), and a way to query it around the store."""

    store: MetadataStore
    query: Callable[[str], list[tuple[Any, ...]]]
    tables: Callable[[], set[str]]
    triggers: Callable[[], set[str]]


@pytest.fixture
def sqlite_schema_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OldDatabase]:
    path = tmp_path / "vault.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "release-1.sqlite.sql").read_text())
    conn.close()

    def query(statement: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()

    def names(kind: str) -> set[str]:
        return {str(n) for (n,) in query(f"SELECT name FROM sqlite_master WHERE type = '{kind}'")}

    store = SQLiteMetadataStore(path)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_module, "SCHEMA_VERSION", 2)
            patch.setattr(
                sqlite_module,
                "SCHEMA",
                tuple(
                    s for s in sqlite_schema.SCHEMA
                    if s not in outside_schema.SQLITE and s not in integrity_schema.SQLITE
                ),
            )
            store.migrate()
        yield OldDatabase(store, query, partial(names, "table"), partial(names, "trigger"))
    finally:
        store.close()


@pytest.fixture
def postgres_schema_2(
    pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OldDatabase]:
    name = f"vault_schema2_{secrets.token_hex(4)}"
    dump = "\n".join(
        line
        for line in (FIXTURES / "release-1.postgres.sql").read_text().splitlines()
        if not line.startswith("\\")  # psql's \restrict guard, not SQL
    )
    with pg_database.connect(pg_database.admin_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_database.admin_url, name)

    def query(statement: str) -> list[tuple[Any, ...]]:
        return pg_database.query(statement, url=url)

    def tables() -> set[str]:
        return {
            str(n) for (n,) in query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }

    def triggers() -> set[str]:
        return {str(n) for (n,) in query("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}

    try:
        with pg_database.connect(url) as conn:
            conn.execute(dump.encode())
        store = PostgresMetadataStore(url)
        try:
            with monkeypatch.context() as patch:
                patch.setattr(postgres_schema, "SCHEMA_VERSION", 2)
                patch.setattr(outside_schema, "POSTGRES", ())
                patch.setattr(integrity_schema, "POSTGRES", ())
                store.migrate()
            yield OldDatabase(store, query, tables, triggers)
        finally:
            store.close()
    finally:
        with pg_database.connect(pg_database.admin_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", "postgres"])
def schema_2(request: pytest.FixtureRequest) -> OldDatabase:
    old: OldDatabase = request.getfixturevalue(f"{request.param}_schema_2")
    return old


def _versions(old: OldDatabase) -> list[tuple[Any, ...]]:
    return old.query("SELECT version, applied_at FROM schema_version ORDER BY version")


def test_schema_2_migrates_to_3(schema_2: OldDatabase) -> None:
    """The log kept as it was; the three tables and their guards added (and schema 4's
    sweep tables); usable at once."""
    store = schema_2.store
    assert [v for v, _ in _versions(schema_2)] == [1, 2]
    assert not schema_2.tables() & NEW_TABLES
    integrate_all(store)
    head = store.ledger_head()
    assert head.size == 5
    checkpoint(store, 5)
    triggers_before = schema_2.triggers()

    store.migrate()

    assert [v for v, _ in _versions(schema_2)] == [1, 2, 3, 4, 5, 6]
    assert schema_2.tables() >= NEW_TABLES
    assert len(schema_2.triggers() - triggers_before) >= 3
    assert store.ledger_head() == head
    assert store.pending_leaves() == 0
    assert store.checkpoint_at(5) is not None

    store.add_cosignature("w1", 5, "— w1\n", at(1))
    store.publish_checkpoint(5, note(5) + "— w1\n", at(2))
    assert store.schedule_anchor(RFC, 5, at(3))
    assert store.claim_anchor(RFC, at(4), LEASE) is not None
    store.finish_anchor(rfc_anchor(5))
    assert store.witness_sizes() == {"w1": 5}
    assert store.latest_published() == PublishedCheckpoint(5, note(5) + "— w1\n", at(2))
    assert store.anchors_covering(4) == [rfc_anchor(5)]


def test_migrating_again_changes_nothing(schema_2: OldDatabase) -> None:
    store = schema_2.store
    integrate_all(store)
    checkpoint(store, 5)
    store.migrate()
    store.add_cosignature("w1", 5, "— w1\n", at(1))
    store.publish_checkpoint(5, note(5), at(2))
    done(store, rfc_anchor(5))
    store.schedule_anchor(EVM, 5, at(3))
    state = (
        _versions(schema_2),
        schema_2.tables(),
        schema_2.triggers(),
        store.ledger_head(),
        _snapshot(store),
        store.latest_checkpoint(),
    )

    store.migrate()
    store.migrate()

    assert (
        _versions(schema_2),
        schema_2.tables(),
        schema_2.triggers(),
        store.ledger_head(),
        _snapshot(store),
        store.latest_checkpoint(),
    ) == state
    assert store.claim_anchor(EVM, at(4), LEASE) is not None  # the job survived, unleased
