"""Tile paths, tree geometry and tile bytes against the tlog-tiles and tessera vectors."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from vault.domain.merkle import CompactRange, leaf_hash, root_at
from vault.domain.tiles import (
    MAX_INDEX,
    TILE_HEIGHT,
    TILE_WIDTH,
    BundleId,
    TileError,
    TileId,
    TilePathError,
    bundles_for_size,
    decode_bundle,
    decode_tile,
    encode_bundle,
    encode_index,
    encode_tile,
    entries_path,
    entries_path_for_leaf,
    level_counts,
    node_in_tile,
    parse_level_index,
    parse_path,
    tile_of_node,
    tile_path,
    tile_width,
    tiles_for_size,
    with_suffix,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "tiles"
SPEC = json.loads((VECTORS / "paths.json").read_text())
LAYOUT: dict[str, Any] = json.loads((VECTORS / "tessera-layout-paths.json").read_text())


def test_constants() -> None:
    full = SPEC["spec"]["full_tile"]
    assert TILE_HEIGHT == 8
    assert full["hashes"] == TILE_WIDTH
    assert len(encode_tile([b"\x00" * 32] * TILE_WIDTH)) == full["bytes"]


@pytest.mark.parametrize("case", SPEC["spec"]["index_encoding"]["cases"])
def test_spec_index_encoding(case: dict[str, Any]) -> None:
    assert encode_index(case["N"]) == case["encoded"]
    assert parse_path(f"tile/0/{case['encoded']}") == TileId(0, case["N"])


@pytest.mark.parametrize("case", LAYOUT["EntriesPathForLogIndex(seq, logSize)"])
def test_entries_path_for_leaf(case: dict[str, Any]) -> None:
    assert entries_path_for_leaf(case["seq"], case["logSize"]) == case["wantPath"]


@pytest.mark.parametrize("case", LAYOUT["EntriesPath(N, p)"])
def test_entries_path(case: dict[str, Any]) -> None:
    assert entries_path(case["N"], case.get("p", 0)) == case["wantPath"]
    assert parse_path(case["wantPath"]) == BundleId(case["N"], case.get("p", 0) or TILE_WIDTH)


@pytest.mark.parametrize("case", LAYOUT["TilePath(level, index, p)"])
def test_tile_path(case: dict[str, Any]) -> None:
    level, index, p = case["level"], case["index"], case.get("p", 0)
    assert tile_path(level, index, p) == case["wantPath"]
    assert TileId(level, index, p or TILE_WIDTH).path == case["wantPath"]
    assert parse_path(case["wantPath"]) == TileId(level, index, p or TILE_WIDTH)


@pytest.mark.parametrize("case", LAYOUT["NWithSuffix(level, index, p)"])
def test_with_suffix(case: dict[str, Any]) -> None:
    assert with_suffix(case["index"], case.get("p", 0)) == case["wantPath"]


@pytest.mark.parametrize(
    "case", LAYOUT["ParseTileLevelIndexPartial(pathLevel, pathIndex)"],
    ids=lambda c: f"{c['pathLevel']}/{c['pathIndex']}",
)
def test_parse_level_index(case: dict[str, Any]) -> None:
    if case.get("wantErr"):
        with pytest.raises(TilePathError):
            parse_level_index(case["pathLevel"], case["pathIndex"])
        with pytest.raises(TilePathError):
            parse_path(f"tile/{case['pathLevel']}/{case['pathIndex']}")
        return
    want = TileId(case["wantLevel"], case["wantIndex"], case["wantP"] or TILE_WIDTH)
    assert parse_level_index(case["pathLevel"], case["pathIndex"]) == want
    assert parse_path(f"tile/{case['pathLevel']}/{case['pathIndex']}") == want


@pytest.mark.parametrize(
    "path",
    [
        "tile/01/000", "tile/0/x000/001", "tile/0/000.p/0", "tile/0/000.p/007",
        "tile/entries/000.p/256", "tile/0/1", "tile/0/0001", "tile/x/000", "tile/0/",
        "tile/0", "tiles/0/000", "tile/64/000", "tile/+1/000", "tile/0/000.p/1.p/2",
        "tile/entries/x001", "tile/entries/", "tile/0/000/", "/tile/0/000", "tile/0/ 000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # 2**64
    ],
)
def test_parse_refuses_non_canonical_paths(path: str) -> None:
    with pytest.raises(TilePathError):
        parse_path(path)


def test_path_round_trips() -> None:
    rng = random.Random(8)
    indexes = [0, 1, 999, 1000, 1001, 999_999, 1_000_000, MAX_INDEX]
    indexes += [rng.randrange(MAX_INDEX) >> rng.randrange(64) for _ in range(300)]
    for index in indexes:
        for width in (1, 17, 255, 256):
            tile = TileId(rng.randrange(64), index, width)
            assert parse_path(tile.path) == tile
            bundle = BundleId(index, width)
            assert parse_path(bundle.path) == bundle
    assert max(len(encode_index(i)) for i in indexes) == len("x018/x446/x744/x073/x709/x551/615")


def test_bad_coordinates_are_refused() -> None:
    for args in ((64, 0, 256), (-1, 0, 256), (0, -1, 256), (0, MAX_INDEX + 1, 1), (0, 0, 0),
                 (0, 0, 257)):
        with pytest.raises(ValueError):
            TileId(*args)
    with pytest.raises(ValueError):
        with_suffix(0, 256)
    with pytest.raises(ValueError):
        entries_path_for_leaf(256, 256)


def _expand(lines: list[str]) -> list[str]:
    paths: list[str] = []
    for line in lines:
        ranged = re.fullmatch(r"(\S+)/(\d{3}) \.\. \S+/(\d{3}) \((\d+) full\)", line)
        if ranged:
            prefix, first, last, count = ranged.groups()
            assert int(last) - int(first) + 1 == int(count)
            paths += [f"{prefix}/{n:03d}" for n in range(int(first), int(last) + 1)]
        else:
            paths.append(line)
    return paths


@pytest.mark.parametrize("example", SPEC["spec"]["tree_size_examples"], ids=lambda e: e["quote"])
def test_spec_tree_size_examples(example: dict[str, Any]) -> None:
    size = example["tree_size"]
    want = [(t["level"], t["full"], t["partial_width"]) for t in example["tiles"]]
    assert level_counts(size) == want
    derived = SPEC["derived_paths"][str(size)]
    assert [t.path for t in tiles_for_size(size)] == _expand(derived["tiles"])
    assert [b.path for b in bundles_for_size(size)] == _expand(derived["entry_bundles"])


def test_partial_width_rule() -> None:
    for size in (0, 1, 255, 256, 257, 65535, 65536, 70000, 16_777_217):
        for level, full, partial in level_counts(size):
            assert partial == (size // TILE_WIDTH**level) % TILE_WIDTH
            assert tile_width(level, full, size) == partial
            if full:
                assert tile_width(level, full - 1, size) == TILE_WIDTH
            assert tile_width(level, full + 1, size) == 0
    assert list(tiles_for_size(0)) == [] == list(bundles_for_size(0))


def test_tiles_hold_the_tree() -> None:
    """Nodes a growing range completes, filed by ``tile_of_node``, make the tiles;
    every node (any level) is the root of its ``node_in_tile`` run."""
    size = 70_000
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    edge, completed = CompactRange().extend(leaves)
    nodes = {(lv, ix): h for lv, ix, h in completed}
    tiles: dict[tuple[int, int], dict[int, bytes]] = {}
    for (level, index), value in nodes.items():
        if level % TILE_HEIGHT == 0:
            tile_level, tile_index, position = tile_of_node(level, index)
            tiles.setdefault((tile_level, tile_index), {})[position] = value
    want = list(tiles_for_size(size))
    assert sorted(tiles) == sorted((t.level, t.index) for t in want)
    stored = {}
    for tile in want:
        slots = tiles[tile.level, tile.index]
        assert sorted(slots) == list(range(tile.width))
        stored[tile.level, tile.index] = encode_tile([slots[i] for i in range(tile.width)])

    def from_tiles(level: int, index: int) -> bytes:
        tile_level, tile_index, start, end = node_in_tile(level, index)
        run = decode_tile(stored[tile_level, tile_index])[start:end]
        assert len(run) == end - start
        while len(run) > 1:
            pairs = zip(run[::2], run[1::2], strict=True)
            run = [hashlib.sha256(b"\x01" + a + b).digest() for a, b in pairs]
        return run[0]

    rng = random.Random(3)
    for level, index in [*rng.sample(sorted(nodes), 500), (16, 0), (15, 1), (9, 135)]:
        assert from_tiles(level, index) == nodes[level, index]
    assert root_at(size, from_tiles) == edge.root()
    with pytest.raises(ValueError):
        tile_of_node(3, 0)


def test_tile_bytes() -> None:
    hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(TILE_WIDTH)]
    data = encode_tile(hashes)
    assert decode_tile(data) == hashes == decode_tile(data, TILE_WIDTH)
    assert decode_tile(data[:64], 2) == hashes[:2]
    for bad in (b"", data + b"\x00", data[:-1], data + data[:32]):
        with pytest.raises(TileError):
            decode_tile(bad)
    with pytest.raises(TileError):
        decode_tile(data[:64], 3)
    for bad_hashes in ([], hashes + hashes[:1], [b"short"]):
        with pytest.raises(TileError):
            encode_tile(bad_hashes)


def test_entry_bundles() -> None:
    leaves = [b"", b"a", b"\x00" * 300, b"x" * 0xFFFF]
    data = encode_bundle(leaves)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert data[5:7] == (300).to_bytes(2, "big")
    assert decode_bundle(data) == leaves == decode_bundle(data, 4)
    full = [b"leaf %d" % i for i in range(TILE_WIDTH)]
    assert decode_bundle(encode_bundle(full)) == full
    with pytest.raises(TileError, match="over 65535"):
        encode_bundle([b"x" * 0x10000])
    for bad in ([], [*full, b"one more"]):
        with pytest.raises(TileError):
            encode_bundle(bad)
    for bad_data in (b"", b"\x00", b"\x00\x02a", data[:-1], encode_bundle(full) + b"\x00\x00"):
        with pytest.raises(TileError):
            decode_bundle(bad_data)
    with pytest.raises(TileError):
        decode_bundle(data, 3)
