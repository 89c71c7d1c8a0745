"""The integrity sweep: the verifier re-verifies every document once a period, on its own.

Documents are stored with the sweep off, then a vault with the sweep on
starts over the same data (see ``tests.actors.sweep_helpers``).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.sweep import LEASE_SECONDS
from actors.system import Sizing, Vault
from tests.actors.helpers import (
    archive,
    execute_sql,
    object_path,
    outbox,
    verify,
)
from tests.actors.sweep_helpers import (
    coverage,
    document,
    gates,
    idle,
    running,
    seeded,
    sweep_status,
    until,
    verification_audits,
)
from tests.pg import PgDatabase
from tests.polling import eventually
from tests.support import test_settings
from vault.adapters.blobs.local import HEADER_SIZE
from vault.adapters.stores.sqlite import encode_timestamp
from vault.config import Settings
from vault.domain.integrity import sweep_cutoff
from vault.domain.models import Document, DocumentStatus, utcnow
from vault.wiring import open_metadata_store

FAST = 1000.0
"""MB/s: pacing out of the way."""


def sweep_on(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "integrity_sweep_period_hours": 1.0,
        "integrity_sweep_max_mb_per_second": FAST,
    }
    values.update(overrides)
    return test_settings(tmp_path / "data", **values)


def per_document(audits: list[dict[str, Any]]) -> Counter[str]:
    return Counter(body["entity_id"] for body in audits)


def assert_by_the_sweep(body: dict[str, Any]) -> None:
    assert body["actor_type"] == "system"
    assert body["actor_id"] is None
    assert body["details"]["reason"] == "scheduled_sweep"


class TestOnePass:
    async def test_every_document_is_verified_never_verified_first_then_oldest(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """One pass verifies everything as the system actor: the never-verified ones first
        (in upload order), then the oldest verification first; the pass is recorded and
        coverage counts every document current."""
        settings = sweep_on(tmp_path)
        docs = await seeded(settings, nursery, [2000] * 5)
        old_1, never_1, old_2, never_2, old_3 = docs
        now = utcnow()
        ages = {old_1.id: 5, old_2.id: 9, old_3.id: 7}  # hours ago, all due at a 1 h period
        await _set_verified_at(settings, nursery, {
            doc_id: now - timedelta(hours=h) for doc_id, h in ages.items()
        })

        async with running(settings, nursery) as vault:
            await until(
                lambda: _verified_count(vault, 5),
                "the sweep to verify all five documents", within=10,
            )
            await eventually(
                lambda: sweep_status(vault)["last_pass_completed_at"],
                "the pass to be recorded",
            )
            audits = await verification_audits(vault)
            assert [body["entity_id"] for body in audits] == [
                str(d.id) for d in (never_1, never_2, old_2, old_3, old_1)
            ]
            for body in audits:
                assert body["action"] == "document.verified"
                assert_by_the_sweep(body)
                assert body["correlation_id"] is None
            for doc in docs:
                stored = await document(vault, doc.id)
                assert stored.status is DocumentStatus.VERIFIED
                assert stored.hash_verified_at is not None
                assert stored.hash_verified_at >= now
                assert stored.verified_by is None
            store = vault.backends.store
            last = await vault.backends.in_db(store.last_sweep_pass)
            assert last is not None and last >= now
            found = coverage(vault)
            assert found is not None
            assert (found["documents"], found["current"], found["never"], found["overdue"],
                    found["mismatch"]) == (5, 5, 0, 0, 0)
            status = sweep_status(vault)
            assert status["enabled"] is True
            assert (status["documents"], status["bytes_read"]) == (5, 5 * 2000)

    async def test_an_archived_document_is_swept_and_stays_archived(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        settings = sweep_on(tmp_path)

        async def archive_first(vault: Vault, docs: list[Document]) -> None:
            await archive(vault, docs[0].id)

        archived, live = await seeded(settings, nursery, [2000, 2000], before_stop=archive_first)
        async with running(settings, nursery) as vault:
            await until(lambda: _verified_count(vault, 2), "both documents swept")
            stored = await document(vault, archived.id)
            assert stored.status is DocumentStatus.ARCHIVED
            assert stored.hash_verified_at is not None
            assert (await document(vault, live.id)).status is DocumentStatus.VERIFIED
            audits = await verification_audits(vault)
            assert per_document(audits) == {str(archived.id): 1, str(live.id): 1}

    async def test_with_period_zero_nothing_is_swept(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        settings = sweep_on(tmp_path, integrity_sweep_period_hours=0.0)
        docs = await seeded(settings, nursery, [2000, 2000])
        async with running(settings, nursery) as vault:
            await eventually(lambda: coverage(vault), "the sweep to read coverage once")
            await idle(vault)
            assert await verification_audits(vault) == []
            for doc in docs:
                stored = await document(vault, doc.id)
                assert stored.status is DocumentStatus.UPLOADED
                assert stored.hash_verified_at is None
            status = sweep_status(vault)
            assert (status["enabled"], status["documents"]) == (False, 0)
            assert status["last_pass_completed_at"] is None
            found = coverage(vault)
            assert found is not None and (found["documents"], found["never"]) == (2, 2)


class TestTampering:
    async def test_a_file_changed_on_disk_is_found_by_the_sweep(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """A flipped byte is found with no one asking: mismatch, a mismatch audit event by
        the system, an alert naming no verifier; the intact document is verified."""
        settings = sweep_on(tmp_path)
        target, other = await seeded(settings, nursery, [2000, 2000])
        await trio.to_thread.run_sync(
            _flip_byte, settings.vault_data_dir / "blobs" / "objects" / target.storage_key,
            HEADER_SIZE + 10,
        )
        async with running(settings, nursery) as vault:
            await until(lambda: _verified_count(vault, 2), "the pass")
            await _assert_found_by_the_sweep(vault, target)
            assert (await document(vault, other.id)).status is DocumentStatus.VERIFIED
            assert sweep_status(vault)["mismatches"] == 1

    async def test_a_file_changed_after_a_pass_is_found_within_one_period(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """3.6 s period: after a first clean pass, a flipped byte is found by the next one."""
        settings = sweep_on(tmp_path, integrity_sweep_period_hours=0.001)
        period = 3.6
        target, _other = await seeded(settings, nursery, [2000, 2000])
        async with running(settings, nursery) as vault:
            await until(lambda: _verified_count(vault, 2), "the first pass")
            assert (await document(vault, target.id)).status is DocumentStatus.VERIFIED
            path = object_path(vault, target.storage_key)
            await trio.to_thread.run_sync(_flip_byte, path, HEADER_SIZE + 10)

            async def mismatched() -> bool:
                return (await document(vault, target.id)).status is DocumentStatus.MISMATCH

            await until(mismatched, "the sweep to find the change", within=period + 2)
            await _assert_found_by_the_sweep(vault, target)


async def _assert_found_by_the_sweep(vault: Vault, target: Document) -> None:
    assert (await document(vault, target.id)).status is DocumentStatus.MISMATCH
    rows = await outbox(vault, target.id)
    (alert,) = [row.body for row in rows if row.destination == "integrity_alerts"]
    assert alert["verified_by"] is None
    assert alert["document_id"] == str(target.id)
    assert alert["calculated_hash"] is None
    (audit,) = [
        row.body for row in rows
        if row.destination == "audit_events" and row.kind == "document.mismatch"
    ]
    assert_by_the_sweep(audit)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


async def _verified_count(vault: Vault, wanted: int) -> bool:
    """At least ``wanted`` verifications committed by the sweep."""
    audits = await verification_audits(vault)
    return len([b for b in audits if b["actor_type"] == "system"]) >= wanted


async def _set_verified_at(
    settings: Settings, nursery: trio.Nursery, moments: dict[Any, Any]
) -> None:
    """Rewrite documents' ``hash_verified_at`` in the SQLite file."""
    async with running(attrs.evolve(settings, integrity_sweep_period_hours=0.0), nursery) as v:
        await execute_sql(v, *[
            ("UPDATE documents SET hash_verified_at = ? WHERE id = ?",
             (encode_timestamp(at), str(doc_id)))
            for doc_id, at in moments.items()
        ])


class TestPace:
    async def test_bytes_read_stay_within_the_pace(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """3 x 100 kB at 0.2 MB/s: each read starts no sooner than the bytes before it
        allow (0.5 s a document), and the pass does not take far longer."""
        size, rate = 100_000, 200_000.0
        settings = sweep_on(tmp_path, integrity_sweep_max_mb_per_second=rate / 1e6)
        docs = await seeded(settings, nursery, [size] * 3)
        async with running(settings, nursery, gated=True) as vault:
            started = trio.current_time()
            await until(lambda: _verified_count(vault, 3), "three sweeps", within=10)
            elapsed = trio.current_time() - started
            # Its figures move just after the commit the audits show.
            await eventually(lambda: sweep_status(vault)["documents"] == 3, "three counted")
            reads = [r for r in gates(vault).reads if r.key in {d.storage_key for d in docs}]
            assert len(reads) == 3
            for k in range(1, 3):
                budget = k * size / rate  # what the k documents before cost at the pace
                # The pace counts from each verification's start, a little before its read
                # (the row is fetched first): allow that much, a fifth of one document's
                # budget; unpaced, the reads would be milliseconds apart.
                assert reads[k].at - reads[0].at >= budget - 0.1, (k, reads)
            assert elapsed < 2 * size / rate + 4.0
            assert sweep_status(vault)["bytes_read"] == 3 * size


class TestHttpFirst:
    async def test_the_sweep_waits_while_verifications_queue(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """Verifier concurrency 1. The sweep's first read is held; an HTTP verification is
        held in its read and two more wait in the mailbox. Once the sweep's document is
        let go, the sweep starts nothing while those two wait; it goes on after them."""
        settings = sweep_on(tmp_path)

        async def verify_first(vault: Vault, docs: list[Document]) -> None:
            await verify(vault, docs[0].id)

        http_doc, *swept = await seeded(
            settings, nursery, [2000] * 4, before_stop=verify_first
        )
        sweep_keys = [d.storage_key for d in swept]
        async with running(
            settings, nursery, sizing=Sizing(verifier_concurrency=1),
            held=[d.storage_key for d in (http_doc, *swept)],
        ) as vault:
            blobs = gates(vault)
            await eventually(lambda: blobs.keys_read() == sweep_keys[:1], "the sweep's 1st read")

            answers: list[Document] = []

            async def ask_verify() -> None:
                answers.append(await verify(vault, http_doc.id))

            async with trio.open_nursery() as asks:
                for _ in range(3):
                    asks.start_soon(ask_verify)
                await eventually(
                    lambda: blobs.keys_read().count(http_doc.storage_key) == 1
                    and vault.verifier.depth() == 2,
                    "one HTTP verification reading, two waiting",
                )
                blobs.open_gate(sweep_keys[0])
                await eventually(lambda: sweep_status(vault)["documents"] == 1, "the 1st sweep")
                # Settled with only the HTTP read held: the sweep has started no other read.
                await idle(vault, blob_threads=1)
                assert blobs.keys_read() == [sweep_keys[0], http_doc.storage_key]
                assert vault.verifier.depth() == 2
                blobs.open_all()
            assert len(answers) == 3

            await eventually(lambda: sweep_status(vault)["documents"] == 3, "the rest swept")
            later = [r for r in blobs.reads if r.key in sweep_keys[1:]]
            assert [r.key for r in later] == sweep_keys[1:]
            assert all(r.depth == 0 for r in later), later
            http_reads = [i for i, k in enumerate(blobs.keys_read()) if k == http_doc.storage_key]
            first_later = blobs.keys_read().index(sweep_keys[1])
            assert len(http_reads) == 3
            assert first_later > http_reads[1]  # not before the 2nd HTTP one was done


class TestRestart:
    async def test_a_restart_continues_the_pass(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """Stopped part way through four documents (one a second), a new vault on the same
        data verifies the ones left and re-hashes none of those already done."""
        size, rate = 100_000, 100_000.0
        settings = sweep_on(tmp_path, integrity_sweep_max_mb_per_second=rate / 1e6)
        docs = await seeded(settings, nursery, [size] * 4)
        async with running(settings, nursery) as first:
            await eventually(
                lambda: sweep_status(first)["documents"] >= 2, "two documents swept", within=10
            )
        # What the first committed (a verification cut off by the stop after its commit
        # is not in the first's own figures, but it is in the database).
        done_first = len(await verification_audits(first))
        assert 2 <= done_first < 4  # the third at the earliest a second after the second
        async with running(settings, nursery) as second:
            await until(lambda: _verified_count(second, 4), "the others", within=10)
            await eventually(lambda: sweep_status(second)["documents"] == 4 - done_first,
                             "the second's figures to count the rest")
            audits = await verification_audits(second)
            assert per_document(audits) == {str(d.id): 1 for d in docs}
            assert [b["entity_id"] for b in audits] == [str(d.id) for d in docs]


class TestClaims:
    async def test_losing_the_race_for_one_document_claims_the_next(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        settings = sweep_on(tmp_path)
        first, second = await seeded(settings, nursery, [2000, 2000])
        now = utcnow()
        cutoff = sweep_cutoff(now, timedelta(hours=1))

        def race() -> tuple[list[Any], list[Any]]:
            store, rival = open_metadata_store(settings), open_metadata_store(settings)
            try:
                real_reading = store._reading  # type: ignore[attr-defined]
                raced: list[Any] = []

                @contextlib.contextmanager
                def reading(name: str) -> Iterator[Any]:
                    with real_reading(name) as db:
                        yield db
                    if name == "claim_sweep" and not raced:
                        # Another process claims between this one's read and its claim.
                        raced.append(rival.claim_sweep(now, cutoff, LEASE_SECONDS, 1))

                store._reading = reading  # type: ignore[attr-defined]
                return raced, store.claim_sweep(now, cutoff, LEASE_SECONDS, 1)
            finally:
                rival.close()
                store.close()

        raced, taken = await trio.to_thread.run_sync(race)
        assert raced == [[first.id]]
        assert taken == [second.id]


# ------------------------------------------------- two processes, one database


@pytest.fixture
def shared_pg(tmp_path: Path, pg_database: PgDatabase) -> Settings:
    pg_database.truncate_all(keep=("schema_version",))
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    # One data folder: both processes read the same (embedded) blob store.
    return test_settings(
        tmp_path / "shared", database_url=pg_database.url, ledger_signing_key=pem,
        integrity_sweep_period_hours=1.0, integrity_sweep_max_mb_per_second=FAST,
    )


async def test_two_processes_verify_each_document_exactly_once(
    shared_pg: Settings, pg_database: PgDatabase, nursery: trio.Nursery
) -> None:
    count = 20
    docs = await seeded(shared_pg, nursery, [2000] * count)
    async with running(shared_pg, nursery) as a, running(shared_pg, nursery) as b:

        async def all_current() -> bool:
            found = await a.backends.in_db(
                a.backends.store.integrity_coverage, utcnow(), timedelta(hours=1)
            )
            return found.verified_within_period == count

        await until(all_current, "every document verified", within=15)
        await eventually(
            lambda: sweep_status(a)["documents"] + sweep_status(b)["documents"] >= count,
            "both sweeps to have returned",
        )
        await idle(a)
        await idle(b)
        rows = await trio.to_thread.run_sync(
            pg_database.query,
            "SELECT body FROM outbox WHERE destination = 'audit_events'"
            " AND body::jsonb->>'action' IN ('document.verified', 'document.mismatch')",
        )
        bodies = [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]
        assert per_document(bodies) == {str(d.id): 1 for d in docs}
        for body in bodies:
            assert_by_the_sweep(body)
        assert sweep_status(a)["documents"] + sweep_status(b)["documents"] == count
        for doc in docs:
            assert (await document(a, doc.id)).status is DocumentStatus.VERIFIED

