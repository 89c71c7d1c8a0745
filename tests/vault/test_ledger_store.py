"""The verifiable log in the metadata store, on SQLite and PostgreSQL alike: leaves
written by each change, integration in batches, tiles, checkpoints, and the
database refusing every rewrite."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from tests.vault.store_helpers import (
    BASE,
    StoreBackend,
    archive_entity,
    integrate_all,
    leaf_of,
    make_document,
    no_events,
    upload,
)
from vault.adapters.stores import ledger as ledger_module
from vault.domain.errors import StoreUnavailable
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.log import SignedCheckpoint, TileSet, edge_tiles, tiles_for
from vault.domain.merkle import CompactRange, inclusion_nodes, inclusion_proof, leaf_hash
from vault.domain.models import DocumentStatus
from vault.domain.tiles import TILE_WIDTH, decode_tile
from vault.ports import MetadataStore


def _kinds(store: MetadataStore, size: int) -> list[tuple[LeafKind, str | None]]:
    return [
        (leaf.kind, leaf.sha256)
        for leaf in map(Leaf.parse, store.ledger_leaves(0, size))
    ]


class TestLeaves:
    def test_every_change_writes_its_leaf(self, store: MetadataStore) -> None:
        """Upload, verification (verified, mismatch), archive and cascade each write one leaf."""
        doc = upload(store, make_document())
        other = upload(store, make_document(entity_id=doc.entity_id))
        store.record_verification(
            doc.id, status=DocumentStatus.VERIFIED, calculated_hash=doc.sha256_hash,
            verified_by=None, verified_at=BASE, events=no_events,
        )
        store.record_verification(
            doc.id, status=DocumentStatus.MISMATCH, calculated_hash="cd" * 32,
            verified_by=None, verified_at=BASE, events=no_events,
        )
        store.record_verification(
            doc.id, status=DocumentStatus.MISMATCH, calculated_hash=None,
            verified_by=None, verified_at=BASE, events=no_events,
        )
        store.archive_document(doc.id, archived_by=None, archived_at=BASE, events=no_events)
        store.archive_document(doc.id, archived_by=None, archived_at=BASE, events=no_events)
        assert archive_entity(store, doc.entity_id, "evt-1") == 1

        assert store.pending_leaves() == 7
        assert integrate_all(store) == 7
        assert _kinds(store, 7) == [
            (LeafKind.REGISTERED, doc.sha256_hash),
            (LeafKind.REGISTERED, other.sha256_hash),
            (LeafKind.VERIFIED, doc.sha256_hash),
            (LeafKind.MISMATCH, "cd" * 32),
            (LeafKind.MISMATCH, None),
            (LeafKind.ARCHIVED, doc.sha256_hash),  # the second archive wrote nothing
            (LeafKind.ARCHIVED, other.sha256_hash),
        ]
        leaves = [Leaf.parse(raw) for raw in store.ledger_leaves(0, 7)]
        assert [leaf.document_id for leaf in leaves] == [
            doc.id, other.id, doc.id, doc.id, doc.id, doc.id, other.id
        ]

    def test_the_registered_leaf_is_found_pending_then_integrated(
        self, store: MetadataStore
    ) -> None:
        """registered_leaf answers a pending leaf without an index, then with its index."""
        docs = [upload(store, make_document()) for _ in range(3)]

        assert [leaf_of(store, d).leaf_index for d in docs] == [None] * 3
        integrate_all(store)
        assert [leaf_of(store, d).leaf_index for d in docs] == [0, 1, 2]
        assert store.registered_leaf(uuid4()) is None


class TestIntegration:
    def test_batches_build_the_tree_and_its_tiles(self, store: MetadataStore) -> None:
        """Batches of 7 over 600 leaves give the tree of the leaves in order, and its tiles."""
        docs = [upload(store, make_document(), unique_hash=False) for _ in range(600)]

        sizes = []
        while (done := store.integrate_leaves(7, BASE)).added:
            assert done.added <= 7
            sizes.append(done.after)
        assert sizes[-1] == 600 and len(sizes) == 86

        hashes = [leaf_hash(leaf_of(store, d).leaf) for d in docs]
        expected, _ = CompactRange().extend(hashes)
        head = store.ledger_head()
        assert head.tree == expected
        tiles = store.ledger_tiles([(0, 0), (0, 1), (0, 2), (1, 0), (0, 3)])
        assert set(tiles) == {(0, 0), (0, 1), (0, 2), (1, 0)}
        assert decode_tile(tiles[(0, 0)], TILE_WIDTH) == hashes[:256]
        assert decode_tile(tiles[(0, 2)], 88) == hashes[512:]
        assert len(decode_tile(tiles[(1, 0)], 2)) == 2
        lookup = TileSet(tiles)
        for index in (0, 255, 256, 599):
            assert store.ledger_leaves(index, index + 1) == [leaf_of(store, docs[index]).leaf]
            proof = inclusion_proof(index, 600, lookup.get_node)
            assert set(tiles_for(inclusion_nodes(index, 600))) <= set(tiles)
            assert proof  # shape checked against the reference in test_log.py

    def test_nothing_pending_changes_nothing(self, store: MetadataStore) -> None:
        done = store.integrate_leaves(256, BASE)
        assert (done.before, done.after, done.added) == (0, 0, 0)
        assert store.ledger_head().size == 0
        with pytest.raises(ValueError, match="limit"):
            store.integrate_leaves(0, BASE)

    def test_a_batch_cut_short_is_undone_and_runs_again(
        self, store: MetadataStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure after the indexes and tiles were written leaves the whole batch pending."""
        for _ in range(300):
            upload(store, make_document(), unique_hash=False)
        store.integrate_leaves(256, BASE)
        before = store.ledger_head()
        tiles_before = store.ledger_tiles(edge_tiles(before.size))

        def crash(_: object) -> bytes:
            raise RuntimeError("power cut")

        monkeypatch.setattr(ledger_module, "encode_edge", crash)
        with pytest.raises(RuntimeError, match="power cut"):
            store.integrate_leaves(256, BASE)
        monkeypatch.undo()

        assert store.ledger_head() == before
        assert store.pending_leaves() == 44
        assert store.ledger_tiles(edge_tiles(before.size)) == tiles_before
        assert integrate_all(store) == 300
        assert store.pending_leaves() == 0

    def test_a_damaged_tree_row_stops_integration(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """An edge that does not fit the tree's size is reported, never written on."""
        upload(store, make_document())
        integrate_all(store)
        upload(store, make_document())
        store_backend.execute("UPDATE ledger_tree SET size = 2", [])

        with pytest.raises(StoreUnavailable, match="damaged"):
            store.integrate_leaves(256, BASE)
        assert store.pending_leaves() == 1


class TestCheckpoints:
    def test_kept_by_size_and_the_latest_is_the_largest(self, store: MetadataStore) -> None:
        first = SignedCheckpoint(3, b"a" * 32, "first\n", BASE)
        second = SignedCheckpoint(9, b"b" * 32, "second\n", BASE + timedelta(seconds=1))

        assert store.latest_checkpoint() is None
        store.add_checkpoint(first)
        store.add_checkpoint(second)
        store.add_checkpoint(SignedCheckpoint(3, b"c" * 32, "again\n", BASE))

        assert store.latest_checkpoint() == second
        assert store.checkpoint_at(3) == first
        assert store.checkpoint_at(4) is None


_REFUSED = [
    ("UPDATE ledger_leaves SET kind = 'verified'", "append-only"),
    ("UPDATE ledger_leaves SET leaf = ?", "append-only"),
    ("UPDATE ledger_leaves SET leaf_index = leaf_index + 10", "append-only"),
    ("DELETE FROM ledger_leaves", "append-only"),
    ("DELETE FROM ledger_leaves WHERE leaf_index = 0", "append-only"),
    ("UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 0", "only grow"),
    ("UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 1", "only grow"),
    ("UPDATE ledger_tiles SET idx = 7 WHERE level = 0 AND idx = 1", "only grow"),
    ("DELETE FROM ledger_tiles", "only grow"),
    ("UPDATE ledger_checkpoints SET note = 'forged'", "append-only"),
    ("DELETE FROM ledger_checkpoints", "append-only"),
]


@pytest.mark.parametrize(("statement", "message"), _REFUSED)
def test_the_database_refuses_every_rewrite(
    store: MetadataStore, store_backend: StoreBackend, statement: str, message: str
) -> None:
    """Leaves, tiles (a full one, a partial one shrunk or moved) and checkpoints stay put."""
    for _ in range(260):
        upload(store, make_document(), unique_hash=False)
    integrate_all(store)
    upload(store, make_document(), unique_hash=False)  # one leaf still pending
    head = store.ledger_head()
    store.add_checkpoint(SignedCheckpoint(head.size, head.tree.root(), "note\n", BASE))
    before = (
        store.ledger_leaves(0, 261), store.ledger_tiles([(0, 0), (0, 1), (1, 0)]),
        store.latest_checkpoint(), store.pending_leaves(),
    )
    params = [b"x" * 32] if "?" in statement else []

    with pytest.raises(store_backend.driver_error, match=message):
        store_backend.execute(statement, params)

    after = (
        store.ledger_leaves(0, 261), store.ledger_tiles([(0, 0), (0, 1), (1, 0)]),
        store.latest_checkpoint(), store.pending_leaves(),
    )
    assert after == before


def test_a_partial_tile_may_grow_and_a_pending_leaf_get_its_index(
    store: MetadataStore, store_backend: StoreBackend
) -> None:
    """The triggers let integration do exactly what it needs, through any session."""
    upload(store, make_document())
    upload(store, make_document())
    store.integrate_leaves(1, BASE)

    store_backend.execute("UPDATE ledger_leaves SET leaf_index = 5 WHERE leaf_index IS NULL", [])
    old = store.ledger_tiles([(0, 0)])[(0, 0)]
    store_backend.execute(
        "UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 0", [old + b"y" * 32]
    )

    assert store.pending_leaves() == 0
    assert len(store.ledger_tiles([(0, 0)])[(0, 0)]) == 64
