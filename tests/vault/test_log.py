"""The log kept in tiles: grown in batches it matches the reference tree, and every
proof built from its tiles verifies against the reference root (and a tampered one
does not)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from tests.vault.test_merkle import Tree, _check_consistency, _check_inclusion, _naive_mth
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.log import (
    FULL_TILE_BYTES,
    MissingTile,
    TileSet,
    TreeOutOfStep,
    decode_edge,
    edge_tiles,
    encode_edge,
    grow,
    leaf_for,
    reference_of,
    tile_bytes,
    tiles_for,
)
from vault.domain.merkle import (
    CompactRange,
    ProofError,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    root_at,
    verify_inclusion,
)
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType
from vault.domain.tiles import TILE_WIDTH, tiles_for_size

Grown = tuple[CompactRange, dict[tuple[int, int], bytes], list[int]]


def _grow_in_batches(tree: Tree, size: int, rng: random.Random) -> Grown:
    edge, tiles, sizes = CompactRange(), {}, []  # type: ignore[var-annotated]
    while edge.size < size:
        batch = min(rng.choice((1, 2, 3, 7, 64, 255, 256, 257, 600)), size - edge.size)
        partial = {key: tiles[key] for key in edge_tiles(edge.size)}
        growth = grow(edge, partial, tree.levels[0][edge.size : edge.size + batch])
        for key, value in growth.tiles.items():
            old = tiles.get(key, b"")
            assert value.startswith(old), key  # a tile only ever grows
            assert len(old) < FULL_TILE_BYTES, key  # a full tile is never written again
            tiles[key] = value
        edge = growth.tree
        sizes.append(edge.size)
    return edge, tiles, sizes


@pytest.fixture(scope="module")
def tree() -> Tree:
    from tests.vault.test_merkle import _naive_leaves

    return Tree(list(_naive_leaves()))


@pytest.fixture(scope="module")
def grown(tree: Tree) -> Grown:
    return _grow_in_batches(tree, 2000, random.Random(8))


def test_batches_give_the_reference_tree_and_its_tiles(tree: Tree, grown: Grown) -> None:
    edge, tiles, sizes = grown
    assert edge.root() == _naive_mth(0, 2000)
    assert edge == CompactRange.from_lookup(2000, tree.get_node)
    expected = {(t.level, t.index): t.width for t in tiles_for_size(2000)}
    assert {key: len(value) // 32 for key, value in tiles.items()} == {
        key: width or TILE_WIDTH for key, width in expected.items()
    }
    for (level, index), value in tiles.items():
        for position in range(len(value) // 32):
            node = tree.levels[8 * level][index * TILE_WIDTH + position]
            assert value[position * 32 : position * 32 + 32] == node
    assert len(sizes) > 10


def test_every_size_roots_from_tiles(tree: Tree, grown: Grown) -> None:
    _, tiles, _ = grown
    lookup = TileSet(tiles)
    for size in range(1, 2001):
        assert root_at(size, lookup.get_node) == _naive_mth(0, size), size


def test_proofs_from_tiles_are_the_reference_proofs(tree: Tree, grown: Grown) -> None:
    _, tiles, _ = grown
    rng = random.Random(6962)
    for size in range(1, 2001):
        index = rng.randrange(size)
        nodes = inclusion_nodes(index, size)
        fetched = {key: tiles[key] for key in tiles_for(nodes)}
        lookup = TileSet(fetched)
        proof = inclusion_proof(index, size, lookup.get_node)
        assert proof == inclusion_proof(index, size, tree.get_node), (index, size)
        leaf, root = tree.levels[0][index], _naive_mth(0, size)
        verify_inclusion(leaf, index, size, proof, root)
        if proof:
            position, bit = rng.randrange(len(proof)), rng.randrange(256)
            flipped = bytearray(proof[position])
            flipped[bit // 8] ^= 1 << (bit % 8)
            bad = [*proof[:position], bytes(flipped), *proof[position + 1:]]
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root)
        size1 = rng.randrange(1, size + 1)
        nodes = consistency_nodes(size1, size)
        lookup = TileSet({key: tiles[key] for key in tiles_for(nodes)})
        assert consistency_proof(size1, size, lookup.get_node) == consistency_proof(
            size1, size, tree.get_node
        ), (size1, size)


class _TileTree(Tree):
    """The reference checks of test_merkle, with every node answered from tiles."""

    def __init__(self, reference: Tree, tiles: dict[tuple[int, int], bytes]) -> None:
        self.levels = reference.levels
        self.lookups = []
        self._tiles = TileSet(tiles)

    def get_node(self, level: int, index: int) -> bytes:
        self.lookups.append((level, index))
        return self._tiles.get_node(level, index)


def test_tampered_proofs_from_tiles_are_refused(tree: Tree, grown: Grown) -> None:
    _, tiles, _ = grown
    from_tiles = _TileTree(tree, tiles)
    rng = random.Random(1)
    for _ in range(150):
        size = rng.randrange(1, 2001)
        _check_inclusion(from_tiles, rng.randrange(size), size, 2000)
        _check_consistency(from_tiles, rng.randrange(1, size + 1), size, 2000)


def test_a_large_tree_grows_and_proves_from_tiles() -> None:
    big = Tree.of_size(70_001)
    edge, tiles, _ = _grow_in_batches(big, 70_001, random.Random(3))
    assert edge.root() == big.reference_root(70_001)
    from_tiles = _TileTree(big, tiles)
    for index in (0, 255, 256, 65535, 65536, 70_000):
        _check_inclusion(from_tiles, index, 70_001, 70_001)
    for size1 in (1, 256, 65536, 70_000):
        _check_consistency(from_tiles, size1, 70_001, 70_001)


def test_a_store_out_of_step_is_refused(tree: Tree, grown: Grown) -> None:
    edge, tiles, _ = grown
    partial = {key: tiles[key] for key in edge_tiles(edge.size)}
    with pytest.raises(TreeOutOfStep, match="has no stored tile"):
        grow(edge, {}, [leaf_hash(b"x")])
    short = {key: value[:-32] for key, value in partial.items()}
    with pytest.raises(TreeOutOfStep, match="where hash"):
        grow(edge, short, [leaf_hash(b"x")])
    with pytest.raises(MissingTile):
        TileSet({}).get_node(0, 0)
    with pytest.raises(MissingTile):
        TileSet({(0, 0): tiles[(0, 0)][:64]}).get_node(0, 5)


def test_edge_and_tile_bytes() -> None:
    edge = CompactRange()
    for i in range(13):
        edge, _ = edge.append(leaf_hash(b"%d" % i))
    assert decode_edge(13, encode_edge(edge)) == edge
    with pytest.raises(TreeOutOfStep):
        decode_edge(15, encode_edge(edge))
    with pytest.raises(TreeOutOfStep):
        decode_edge(13, encode_edge(edge) + b"x")
    assert edge_tiles(0) == []
    assert edge_tiles(256) == [(1, 0)]
    assert edge_tiles(257) == [(0, 1), (1, 0)]
    assert edge_tiles(65536) == [(2, 0)]
    stored = bytes(range(64)) * 2
    assert tile_bytes(stored, 4) == stored
    assert tile_bytes(stored, 1) == stored[:32]
    assert tile_bytes(stored, 5) is None


def _document(**changes: object) -> Document:
    now = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
    values: dict[str, object] = dict(
        id=uuid4(), entity_type=EntityType.DEAL, entity_id=uuid4(), token_id=None,
        document_type=DocumentType.KYC, filename="a.pdf", mime_type="application/pdf",
        size_bytes=42, storage_bucket="local", storage_key="k", storage_version_id=None,
        sha256_hash="ab" * 32, status=DocumentStatus.UPLOADED, uploaded_by=uuid4(),
        verified_by=None, archived_by=None, archived_at=None, hash_verified_at=None,
        on_chain_reference=None, metadata=None, created_at=now, updated_at=now,
    )
    values.update(changes)
    return Document(**values)  # type: ignore[arg-type]


def test_leaves_of_document_changes() -> None:
    doc = _document()
    registered = leaf_for(doc, LeafKind.REGISTERED, doc.created_at)
    assert registered.encode() == (
        "document-vault/leaf/v1\n"
        "kind registered\n"
        f"document {doc.id}\n"
        f"entity deal {doc.entity_id}\n"
        f"sha256 {'ab' * 32}\n"
        "size 42\n"
        "time 2026-12-02T10:00:00.123Z\n"
    ).encode()
    assert Leaf.parse(registered.encode()) == registered
    assert reference_of(registered.encode()) == "0x" + leaf_hash(registered.encode()).hex()
    mismatch = leaf_for(doc, LeafKind.MISMATCH, doc.created_at, "cd" * 32)
    assert mismatch.sha256 == "cd" * 32
    assert leaf_for(doc, LeafKind.MISMATCH, doc.created_at, None).sha256 is None
    assert leaf_for(doc, LeafKind.ARCHIVED, doc.created_at).sha256 == "ab" * 32
