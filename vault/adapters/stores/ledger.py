"""The verifiable log's half of the SQL ``MetadataStore``: leaves, tiles, tree, checkpoints.

*Writing*: a document change writes its leaf pending (``insert_leaves``) in
its own transaction; it takes no log lock, so an upload never waits for
the tree. ``integrate_leaves`` then gives up to ``limit`` pending leaves
their indexes, extends the tiles and moves the tree's edge, all in one
transaction that first locks the tree row: two processes integrate into
one tree, one batch at a time, and a crash part-way leaves the batch
pending for the next run. The arithmetic is ``vault.domain.log``'s.

*Reading*: tiles, entry bundles and checkpoints are read without a
transaction. Nothing read is ever rewritten (a tile only grows, and a
partial tile is a prefix of the fuller one), so a proof built from tiles
read after a checkpoint holds for that checkpoint.

*Opening the log* (``open_log``, from ``migrate``): the tree row and its
log id are made once; on the first migration to schema 2 the entries of
the earlier hash chain become the first ``registered`` leaves, in their
order.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

from vault.adapters.stores import ledger_queries as lq
from vault.adapters.stores.outbox import SqlOutbox
from vault.adapters.stores.rows import as_datetime, as_uuid
from vault.adapters.stores.sql import Row, Session
from vault.domain.errors import StoreUnavailable
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.log import (
    Integration,
    PendingLeaf,
    SignedCheckpoint,
    StoredLeaf,
    TileKey,
    TreeHead,
    TreeOutOfStep,
    decode_edge,
    edge_tiles,
    encode_edge,
    grow,
)
from vault.domain.merkle import leaf_hash
from vault.domain.models import EntityType

LEGACY_BATCH: Final = 1000
"""Hash-chain entries read at a time while opening the log."""


class SqlLedger(SqlOutbox):
    """The log's methods of every SQL ``MetadataStore``, over a dialect's sessions."""

    def ledger_head(self) -> TreeHead:
        with self._reading("ledger_head") as db:
            return _head(db.one(lq.TREE))

    def pending_leaves(self) -> int:
        with self._reading("pending_leaves") as db:
            row = db.one(lq.PENDING_COUNT)
        return 0 if row is None else int(row["n"])

    def integrate_leaves(self, limit: int, at: datetime) -> Integration:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        with self._transaction("integrate_leaves") as db:
            head = _head(db.one(lq.TREE_FOR_UPDATE))
            # Read after the lock is granted: this statement's snapshot holds
            # whatever the previous holder committed.
            pending = db.all(lq.PENDING, limit=limit)
            if not pending:
                return Integration(head.size, head.size)
            partial: dict[TileKey, bytes] = {}
            for level, index in edge_tiles(head.size):
                row = db.one(lq.TILE, level=level, idx=index)
                if row is not None:
                    partial[(level, index)] = bytes(row["hashes"])
            try:
                growth = grow(head.tree, partial, [leaf_hash(bytes(r["leaf"])) for r in pending])
            except TreeOutOfStep as exc:
                raise StoreUnavailable(f"the log's stored tree is damaged: {exc}") from exc
            db.many(
                lq.ASSIGN_INDEX,
                [
                    {"leaf_index": head.size + offset, "seq": row["seq"]}
                    for offset, row in enumerate(pending)
                ],
            )
            db.many(
                lq.TILE_PUT,
                [
                    {"level": level, "idx": index, "hashes": hashes}
                    for (level, index), hashes in sorted(growth.tiles.items())
                ],
            )
            moved = db.execute(
                lq.TREE_UPDATE,
                size=growth.tree.size,
                edge=encode_edge(growth.tree),
                at=at,
                before=head.size,
            )
            if moved != 1:
                raise StoreUnavailable("the log's tree row changed under its lock")
        return Integration(head.size, growth.tree.size)

    def ledger_tiles(self, keys: Sequence[TileKey]) -> dict[TileKey, bytes]:
        found: dict[TileKey, bytes] = {}
        with self._reading("ledger_tiles") as db:
            for level, index in dict.fromkeys(keys):
                row = db.one(lq.TILE, level=level, idx=index)
                if row is not None:
                    found[(level, index)] = bytes(row["hashes"])
        return found

    def ledger_leaves(self, start: int, end: int) -> list[bytes]:
        with self._reading("ledger_leaves") as db:
            return [bytes(row["leaf"]) for row in db.all(lq.LEAVES_BY_INDEX, start=start, end=end)]

    def registered_leaf(self, document_id: UUID) -> StoredLeaf | None:
        with self._reading("registered_leaf") as db:
            row = db.one(lq.REGISTERED_LEAF, document_id=document_id)
        if row is None:
            return None
        index = row["leaf_index"]
        return StoredLeaf(
            leaf=bytes(row["leaf"]),
            leaf_hash=str(row["leaf_hash"]),
            leaf_index=None if index is None else int(index),
        )

    def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        with self._statement("add_checkpoint") as db:
            db.execute(
                lq.CHECKPOINT_INSERT,
                size=checkpoint.size,
                root_hash=checkpoint.root_hash,
                note=checkpoint.note,
                signed_at=checkpoint.signed_at,
            )

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        with self._reading("latest_checkpoint") as db:
            row = db.one(lq.CHECKPOINT_LATEST)
        return None if row is None else _checkpoint(row)

    def checkpoint_at(self, size: int) -> SignedCheckpoint | None:
        with self._reading("checkpoint_at") as db:
            row = db.one(lq.CHECKPOINT_AT, size=size)
        return None if row is None else _checkpoint(row)


def insert_leaves(db: Session, leaves: Iterable[PendingLeaf]) -> None:
    """Write leaves pending, inside the caller's transaction."""
    db.many(
        lq.LEAF_INSERT,
        [
            {
                "document_id": item.document_id,
                "kind": item.kind,
                "leaf": item.leaf,
                "leaf_hash": item.leaf_hash,
                "created_at": item.created_at,
            }
            for item in leaves
        ],
    )


def open_log(db: Session, at: datetime, *, first_migration: bool) -> None:
    """Make the tree row (once) and, at the first migration, the hash chain's leaves."""
    db.execute(lq.TREE_OPEN, log_id=secrets.token_hex(8), edge=b"", at=at)
    if not first_migration:
        return
    after = 0
    while True:
        rows = db.all(lq.LEGACY_ENTRIES, after=after, limit=LEGACY_BATCH)
        if not rows:
            return
        insert_leaves(db, (_legacy_leaf(row, at) for row in rows))
        after = int(rows[-1]["seq"])


def _legacy_leaf(row: Row, at: datetime) -> PendingLeaf:
    leaf = Leaf(
        kind=LeafKind.REGISTERED,
        document_id=as_uuid(row["document_id"]),
        entity_type=EntityType(row["entity_type"]),
        entity_id=as_uuid(row["entity_id"]),
        sha256=str(row["sha256_hash"]),
        size=int(row["size_bytes"]),
        time=as_datetime(row["registered_at"]),
    )
    return PendingLeaf.of(leaf, at)


def _head(row: Row | None) -> TreeHead:
    if row is None:
        raise StoreUnavailable("the log has no tree row: run vault migrate")
    size = int(row["size"])
    try:
        tree = decode_edge(size, bytes(row["edge"]))
    except TreeOutOfStep as exc:
        raise StoreUnavailable(f"the log's stored tree is damaged: {exc}") from exc
    return TreeHead(log_id=str(row["log_id"]), tree=tree)


def _checkpoint(row: Row) -> SignedCheckpoint:
    return SignedCheckpoint(
        size=int(row["size"]),
        root_hash=bytes(row["root_hash"]),
        note=str(row["note"]),
        signed_at=as_datetime(row["signed_at"]),
    )
