"""The log's checkpoints outside the vault, in the SQL store: cosignatures, publication, anchors.

*Cosignatures* are kept one per witness and checkpoint size (a second copy
of the same is ignored: two processes may both hear it). The largest size a
witness cosigned is where its next consistency proof starts.

*Published* checkpoints are the ones that met the witness quorum, with
their cosignature lines; readers serve the largest.

*Anchors* are claimed like the outbox's rows: ``claim_anchor`` takes the
oldest unfinished job of a kind whose lease has run out and leases it in
one compare-and-set statement, so two processes never work one job at
once; ``save_anchor`` writes its progress and hands the lease back (or keeps
it until a retry time). A done row never changes again (a trigger refuses).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from vault.adapters.stores.ledger import SqlLedger
from vault.adapters.stores.rows import as_datetime, as_optional_datetime
from vault.adapters.stores.sql import Q, Row
from vault.domain.publication import (
    AnchorJob,
    AnchorKind,
    AnchorState,
    PublishedCheckpoint,
    StoredAnchor,
)

COSIGNATURE_INSERT = Q(
    "INSERT INTO ledger_cosignatures (witness, size, line, cosigned_at)"
    " VALUES ($witness, $size, $line, $at) ON CONFLICT (witness, size) DO NOTHING"
)
COSIGNATURES_AT = Q("SELECT witness, line FROM ledger_cosignatures WHERE size = $size")
WITNESS_SIZES = Q("SELECT witness, max(size) AS size FROM ledger_cosignatures GROUP BY witness")

PUBLISH = Q(
    "INSERT INTO ledger_published (size, note, published_at) VALUES ($size, $note, $at)"
    " ON CONFLICT (size) DO NOTHING"
)
_PUBLISHED = "SELECT size, note, published_at FROM ledger_published"
PUBLISHED_LATEST = Q(f"{_PUBLISHED} ORDER BY size DESC LIMIT 1")
PUBLISHED_AT = Q(f"{_PUBLISHED} WHERE size = $size")

_JOB = (
    "SELECT kind, size, state, created_at, attempts, last_error, tx_hash, nonce, raw_tx"
    " FROM ledger_anchors"
)
ANCHOR_SCHEDULE = Q(
    "INSERT INTO ledger_anchors (kind, size, state, created_at, attempts)"
    " VALUES ($kind, $size, 'pending', $at, 0) ON CONFLICT (kind, size) DO NOTHING"
)
ANCHOR_LAST = Q(f"{_JOB} WHERE kind = $kind ORDER BY size DESC LIMIT 1")
ANCHOR_NEXT = Q(
    f"{_JOB} WHERE kind = $kind AND state <> 'done'"
    " AND (leased_until IS NULL OR leased_until <= $now) ORDER BY size LIMIT 1"
)
ANCHOR_LEASE = Q(
    "UPDATE ledger_anchors SET leased_until = $until WHERE kind = $kind AND size = $size"
    " AND state <> 'done' AND (leased_until IS NULL OR leased_until <= $now)"
)
ANCHOR_SAVE = Q(
    "UPDATE ledger_anchors SET state = $state, attempts = $attempts, last_error = $last_error,"
    " tx_hash = $tx_hash, nonce = $nonce, raw_tx = $raw_tx, leased_until = $until"
    " WHERE kind = $kind AND size = $size AND state <> 'done'"
)
ANCHOR_FINISH = Q(
    "UPDATE ledger_anchors SET state = 'done', last_error = NULL, leased_until = NULL,"
    " token = $token, chain_id = $chain_id, tx_hash = $tx_hash, block_number = $block_number,"
    " block_hash = $block_hash, anchored_at = $anchored_at"
    " WHERE kind = $kind AND size = $size AND state <> 'done'"
)
_DONE = (
    "SELECT a.kind AS kind, a.size AS size, c.note AS note, a.anchored_at AS anchored_at,"
    " a.token AS token, a.chain_id AS chain_id, a.tx_hash AS tx_hash,"
    " a.block_number AS block_number, a.block_hash AS block_hash"
    " FROM ledger_anchors a JOIN ledger_checkpoints c ON c.size = a.size"
)
# Per kind, the first finished anchor whose checkpoint holds the leaf.
ANCHORS_COVERING = Q(
    f"{_DONE} WHERE a.state = 'done' AND a.size = ("
    " SELECT min(b.size) FROM ledger_anchors b"
    " WHERE b.kind = a.kind AND b.state = 'done' AND b.size > $index"
    ") ORDER BY a.kind"
)
ANCHOR_NEWEST = Q(f"{_DONE} WHERE a.kind = $kind AND a.state = 'done' ORDER BY a.size DESC LIMIT 1")


class SqlLogOutside(SqlLedger):
    """Cosignatures, published checkpoints and anchors of every SQL ``MetadataStore``."""

    def add_cosignature(self, witness: str, size: int, line: str, at: datetime) -> None:
        with self._statement("add_cosignature") as db:
            db.execute(COSIGNATURE_INSERT, witness=witness, size=size, line=line, at=at)

    def cosignatures_at(self, size: int) -> dict[str, str]:
        with self._reading("cosignatures_at") as db:
            return {str(r["witness"]): str(r["line"]) for r in db.all(COSIGNATURES_AT, size=size)}

    def witness_sizes(self) -> dict[str, int]:
        with self._reading("witness_sizes") as db:
            return {str(r["witness"]): int(r["size"]) for r in db.all(WITNESS_SIZES)}

    def publish_checkpoint(self, size: int, note: str, at: datetime) -> None:
        with self._statement("publish_checkpoint") as db:
            db.execute(PUBLISH, size=size, note=note, at=at)

    def latest_published(self) -> PublishedCheckpoint | None:
        with self._reading("latest_published") as db:
            row = db.one(PUBLISHED_LATEST)
        return None if row is None else _published(row)

    def published_at(self, size: int) -> PublishedCheckpoint | None:
        with self._reading("published_at") as db:
            row = db.one(PUBLISHED_AT, size=size)
        return None if row is None else _published(row)

    def schedule_anchor(self, kind: AnchorKind, size: int, at: datetime) -> bool:
        with self._statement("schedule_anchor") as db:
            return db.execute(ANCHOR_SCHEDULE, kind=kind.value, size=size, at=at) == 1

    def last_anchor(self, kind: AnchorKind) -> AnchorJob | None:
        with self._reading("last_anchor") as db:
            row = db.one(ANCHOR_LAST, kind=kind.value)
        return None if row is None else _job(row)

    def claim_anchor(
        self, kind: AnchorKind, now: datetime, lease_seconds: float
    ) -> AnchorJob | None:
        until = now + timedelta(seconds=lease_seconds)
        with self._transaction("claim_anchor") as db:
            row = db.one(ANCHOR_NEXT, kind=kind.value, now=now)
            if row is None:
                return None
            taken = db.execute(
                ANCHOR_LEASE, until=until, kind=kind.value, size=int(row["size"]), now=now
            )
        return _job(row) if taken == 1 else None

    def save_anchor(self, job: AnchorJob, retry_at: datetime | None) -> None:
        if job.state is AnchorState.DONE:
            raise ValueError("a finished anchor is written by finish_anchor, with its proof")
        with self._statement("save_anchor") as db:
            db.execute(
                ANCHOR_SAVE, state=job.state.value, attempts=job.attempts,
                last_error=job.last_error, tx_hash=job.tx_hash, nonce=job.nonce,
                raw_tx=job.raw_tx, until=retry_at, kind=job.kind.value, size=job.size,
            )

    def finish_anchor(self, anchor: StoredAnchor) -> None:
        with self._statement("finish_anchor") as db:
            db.execute(
                ANCHOR_FINISH, token=anchor.token, chain_id=anchor.chain_id,
                tx_hash=anchor.tx_hash, block_number=anchor.block_number,
                block_hash=anchor.block_hash, anchored_at=anchor.anchored_at,
                kind=anchor.kind.value, size=anchor.size,
            )

    def anchors_covering(self, leaf_index: int) -> list[StoredAnchor]:
        with self._reading("anchors_covering") as db:
            return [_anchor(r) for r in db.all(ANCHORS_COVERING, index=leaf_index)]

    def newest_anchor(self, kind: AnchorKind) -> StoredAnchor | None:
        with self._reading("newest_anchor") as db:
            row = db.one(ANCHOR_NEWEST, kind=kind.value)
        return None if row is None else _anchor(row)


def _published(row: Row) -> PublishedCheckpoint:
    return PublishedCheckpoint(
        size=int(row["size"]), note=str(row["note"]),
        published_at=as_datetime(row["published_at"]),
    )


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _job(row: Row) -> AnchorJob:
    return AnchorJob(
        kind=AnchorKind(row["kind"]), size=int(row["size"]), state=AnchorState(row["state"]),
        created_at=as_datetime(row["created_at"]), attempts=int(row["attempts"]),
        last_error=_optional_str(row["last_error"]), tx_hash=_optional_str(row["tx_hash"]),
        nonce=_optional_int(row["nonce"]), raw_tx=_optional_str(row["raw_tx"]),
    )


def _anchor(row: Row) -> StoredAnchor:
    anchored_at = as_optional_datetime(row["anchored_at"])
    assert anchored_at is not None  # done rows always have it
    token = row["token"]
    return StoredAnchor(
        kind=AnchorKind(row["kind"]), size=int(row["size"]), note=str(row["note"]),
        anchored_at=anchored_at, token=None if token is None else bytes(token),
        chain_id=_optional_int(row["chain_id"]), tx_hash=_optional_str(row["tx_hash"]),
        block_number=_optional_int(row["block_number"]),
        block_hash=_optional_str(row["block_hash"]),
    )
