"""The log kept in tiles: growing it a batch at a time, proving from what is stored.

The store keeps three things for the tree: the leaves (each with its index
once integrated), the hash tiles (``tlog-tiles``: tile ``(L, N)`` holds the
roots of the complete subtrees of height ``8·L`` numbered ``256·N`` to
``256·N + 255``), and the tree's right edge (a ``CompactRange``). This module
is the arithmetic between them, with no I/O:

- ``grow`` appends a batch of leaf hashes to the edge and says which tiles
  change and what they hold afterwards; it needs only the partial tiles of
  the edge (``edge_tiles``), never the rest of the tree;
- ``TileSet`` answers ``get_node`` from the tiles a proof needs
  (``tiles_for``), so a receipt or a consistency proof is built from a few
  tiles, not by rebuilding the tree.

A tile only ever grows: a partial tile of width ``W`` is the first ``W``
hashes of the fuller one, so the store serves ``tile/L/N.p/W`` from the
tile as it is now. ``grow`` refuses a tile that is out of step with the
edge (its width is not where the next node goes): that is a damaged store,
and writing on would fork the tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

import attrs

from vault.domain.leaf import Leaf, LeafKind
from vault.domain.merkle import HASH_SIZE, CompactRange, leaf_hash, node_hash
from vault.domain.models import Document
from vault.domain.tiles import TILE_HEIGHT, TILE_WIDTH, node_in_tile, tile_of_node

TileKey = tuple[int, int]
"""``(tile level, tile index)``."""

REFERENCE_PREFIX: Final = "0x"
DEFAULT_ORIGIN_PREFIX: Final = "document-vault.local/"
FULL_TILE_BYTES: Final = TILE_WIDTH * HASH_SIZE


class TreeOutOfStep(ValueError):
    """The stored tiles and the stored edge disagree: the store is damaged."""


class MissingTile(LookupError):
    """A node was asked of a tile the caller did not fetch, or one not stored yet."""


# ------------------------------------------------------------------ leaves


def leaf_for(doc: Document, kind: LeafKind, at: datetime, sha256: str | None = None) -> Leaf:
    """The leaf recording a change of ``doc`` at ``at``.

    ``sha256`` is the recorded hash unless given (a mismatch gives the
    calculated hash, or None when nothing could be read).
    """
    return Leaf(
        kind=kind,
        document_id=doc.id,
        entity_type=doc.entity_type,
        entity_id=doc.entity_id,
        sha256=doc.sha256_hash if sha256 is None and kind is not LeafKind.MISMATCH else sha256,
        size=doc.size_bytes,
        time=at,
    )


def reference_of(leaf: bytes) -> str:
    """A document's ``on_chain_reference``: ``0x`` and the hex leaf hash of its leaf."""
    return REFERENCE_PREFIX + leaf_hash(leaf).hex()


@attrs.frozen
class PendingLeaf:
    """A leaf as a change writes it, before it has an index."""

    document_id: UUID
    kind: LeafKind
    leaf: bytes
    created_at: datetime

    @classmethod
    def of(cls, leaf: Leaf, at: datetime) -> PendingLeaf:
        return cls(leaf.document_id, leaf.kind, leaf.encode(), at)

    @property
    def leaf_hash(self) -> str:
        return leaf_hash(self.leaf).hex()


@attrs.frozen
class StoredLeaf:
    """A leaf as the store holds it: its bytes, the hash written beside them, its index."""

    leaf: bytes
    leaf_hash: str
    """Hex, as written with the leaf (the store's copy, checked against the bytes)."""
    leaf_index: int | None
    """None while the leaf waits to be integrated."""


# -------------------------------------------------------------- tree state


@attrs.frozen
class TreeHead:
    """The integrated tree as stored: its edge (size and right-edge hashes) and log id."""

    log_id: str
    tree: CompactRange

    @property
    def size(self) -> int:
        return self.tree.size


@attrs.frozen
class Integration:
    """What one integration batch did: the tree's size before and after."""

    before: int
    after: int

    @property
    def added(self) -> int:
        return self.after - self.before


def origin_for(configured: str | None, log_id: str) -> str:
    """The checkpoints' origin: ``LEDGER_ORIGIN``, or ``document-vault.local/<log id>``."""
    return configured or DEFAULT_ORIGIN_PREFIX + log_id


@attrs.frozen
class SignedCheckpoint:
    """A checkpoint the vault signed: its size, root and the signed note verbatim."""

    size: int
    root_hash: bytes
    note: str
    signed_at: datetime


def encode_edge(tree: CompactRange) -> bytes:
    return b"".join(tree.hashes)


def decode_edge(size: int, data: bytes) -> CompactRange:
    """The right edge stored as concatenated hashes; ``TreeOutOfStep`` when it cannot be."""
    count, rest = divmod(len(data), HASH_SIZE)
    if rest or count != size.bit_count():
        raise TreeOutOfStep(f"a tree of size {size} has {size.bit_count()} edge hashes,"
                            f" the store holds {len(data)} bytes")
    return CompactRange(size, tuple(data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)))


# ---------------------------------------------------------------- growing


def edge_tiles(size: int) -> list[TileKey]:
    """The partial tiles of a tree of ``size`` leaves: the only ones an append extends."""
    keys: list[TileKey] = []
    level, nodes = 0, size
    while nodes:
        if nodes % TILE_WIDTH:
            keys.append((level, nodes // TILE_WIDTH))
        level, nodes = level + 1, nodes >> TILE_HEIGHT
    return keys


@attrs.frozen
class Growth:
    """What appending a batch does: the new edge and every tile it changed, whole."""

    tree: CompactRange
    tiles: dict[TileKey, bytes]


def grow(
    tree: CompactRange, partial: Mapping[TileKey, bytes], leaf_hashes: Sequence[bytes]
) -> Growth:
    """Append ``leaf_hashes`` to ``tree``; ``partial`` holds its ``edge_tiles`` as stored."""
    missing = [key for key in edge_tiles(tree.size) if key not in partial]
    if missing:
        raise TreeOutOfStep(f"the tree of size {tree.size} has no stored tile {missing[0]}")
    grown, completed = tree.extend(leaf_hashes)
    tiles: dict[TileKey, bytearray] = {}
    for level, index, value in completed:
        if level % TILE_HEIGHT:
            continue
        tile_level, tile_index, position = tile_of_node(level, index)
        key = (tile_level, tile_index)
        current = tiles.get(key)
        if current is None:
            current = tiles[key] = bytearray(partial.get(key, b""))
        if len(current) != position * HASH_SIZE:
            raise TreeOutOfStep(
                f"tile {key} holds {len(current) // HASH_SIZE} hashes where hash {position} goes"
            )
        current += value
    return Growth(grown, {key: bytes(value) for key, value in tiles.items()})


# ---------------------------------------------------------------- proving


def tiles_for(nodes: Iterable[tuple[int, int]]) -> list[TileKey]:
    """The tiles holding these complete nodes, each once."""
    keys: dict[TileKey, None] = {}
    for level, index in nodes:
        tile_level, tile_index, _, _ = node_in_tile(level, index)
        keys[(tile_level, tile_index)] = None
    return list(keys)


def _subtree_root(hashes: bytes, start: int, end: int) -> bytes:
    """The root of the perfect subtree over tile hashes ``[start, end)``."""
    row = [hashes[i * HASH_SIZE:(i + 1) * HASH_SIZE] for i in range(start, end)]
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


class TileSet:
    """Complete nodes answered from tiles (``get_node``), as the proof functions want."""

    def __init__(self, tiles: Mapping[TileKey, bytes]) -> None:
        self._tiles = tiles
        self._nodes: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes:
        found = self._nodes.get((level, index))
        if found is not None:
            return found
        tile_level, tile_index, start, end = node_in_tile(level, index)
        hashes = self._tiles.get((tile_level, tile_index))
        if hashes is None or len(hashes) < end * HASH_SIZE:
            raise MissingTile(f"node ({level}, {index}) needs tile ({tile_level}, {tile_index})"
                              f" with {end} hashes")
        value = self._nodes[(level, index)] = _subtree_root(hashes, start, end)
        return value


def tile_bytes(stored: bytes, width: int) -> bytes | None:
    """Tile ``…/.p/W`` (or the full tile for ``W = 256``) from the tile as stored now."""
    if len(stored) < width * HASH_SIZE:
        return None
    return stored[: width * HASH_SIZE]
