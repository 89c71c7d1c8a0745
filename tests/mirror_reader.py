"""A tlog-tiles client of the log's S3 mirror, with the bucket alone (no store, no service).

``read_tiles_log`` opens a checkpoint with the log's key, fetches every tile
and entry bundle of its size, and checks that the tiles give its root, that
each upper tile hash is the root of its children and that each level-0 hash
is its bundle's leaf's. It answers the checkpoint and the bundles' leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vault.domain.checkpoint import Checkpoint, open_checkpoint
from vault.domain.log import TileSet
from vault.domain.merkle import HASH_SIZE, leaf_hash, node_hash, root_at
from vault.domain.note import Verifier
from vault.domain.tiles import (
    TILE_WIDTH,
    bundles_for_size,
    decode_bundle,
    decode_tile,
    tiles_for_size,
)


def get_object(client: Any, bucket: str, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def read_tiles_log(
    note: bytes | str, fetch: Callable[[str], bytes], verifier: Verifier
) -> tuple[Checkpoint, list[list[bytes]]]:
    """The checkpoint ``note`` opened with ``verifier``, and each bundle's leaves, checked
    against tiles read through ``fetch`` (a tlog-tiles path → its bytes)."""
    checkpoint = open_checkpoint(note, verifier)
    tiles: dict[tuple[int, int], bytes] = {}
    for tile in tiles_for_size(checkpoint.size):
        data = fetch(tile.path)
        decode_tile(data, tile.width)
        tiles[(tile.level, tile.index)] = data
    lookup = TileSet(tiles)
    assert root_at(checkpoint.size, lookup.get_node) == checkpoint.root_hash
    for (level, index), data in tiles.items():
        for position, value in enumerate(decode_tile(data)) if level else ():
            child = TILE_WIDTH * index + position
            assert len(tiles[(level - 1, child)]) == TILE_WIDTH * HASH_SIZE
            half = 8 * level - 1
            left, right = lookup.get_node(half, 2 * child), lookup.get_node(half, 2 * child + 1)
            assert node_hash(left, right) == value
    bundles: list[list[bytes]] = []
    for bundle in bundles_for_size(checkpoint.size):
        leaves = decode_bundle(fetch(bundle.path), bundle.width)
        assert [leaf_hash(leaf) for leaf in leaves] == decode_tile(
            tiles[(0, bundle.index)], bundle.width
        )
        bundles.append(leaves)
    return checkpoint, bundles
