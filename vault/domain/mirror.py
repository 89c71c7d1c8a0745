"""Which tiles and entry bundles a static tlog-tiles mirror writes as the log grows.

A mirror that serves the checkpoint of size ``s`` must hold every path a
client of that checkpoint can ask for, ``needed(s)``: ``tiles_for_size(s)``
and ``bundles_for_size(s)``. Moving it from a checkpoint of size ``p``
(mirrored completely) to one of size ``s`` writes exactly
``needed(s) - needed(p)``:

- every *full* tile and bundle of ``s`` that was not yet full at ``p``
  (those of ``p`` are already there, and never change), and
- every *partial* tile and bundle of ``s`` that ``p`` did not have (a partial
  path names its width, ``.p/<W>``, so a path the two sizes share holds the
  same bytes and is already there).

Nothing is ever deleted, so a client still holding the older checkpoint
finds its partial paths too. Run over ``0 → s1 → s2 → …`` the writes cover
every checkpoint's paths and write no path twice.
"""

from __future__ import annotations

from vault.domain.tiles import TILE_HEIGHT, TILE_WIDTH, BundleId, TileId, level_counts

MirrorPath = TileId | BundleId


def mirror_paths(previous_size: int, size: int) -> list[MirrorPath]:
    """The tiles, then the bundles, to write moving the mirror from ``previous_size`` to ``size``.

    ``previous_size`` 0 means nothing is mirrored yet. Within each level, and
    among the bundles, full paths come first by index, then the partial one.
    The same size twice is nothing to write. ``ValueError`` unless
    ``0 <= previous_size <= size``.
    """
    if not 0 <= previous_size <= size:
        raise ValueError(f"cannot mirror from size {previous_size} to size {size}")
    before = {level: full for level, full, _ in level_counts(previous_size)}
    paths: list[MirrorPath] = []
    for level, full, partial in level_counts(size):
        paths += (TileId(level, index) for index in range(before.get(level, 0), full))
        shift = TILE_HEIGHT * level
        if partial and previous_size >> shift != size >> shift:
            paths.append(TileId(level, full, partial))
    full_bundles = size // TILE_WIDTH
    paths += (BundleId(index) for index in range(previous_size // TILE_WIDTH, full_bundles))
    if size % TILE_WIDTH and previous_size != size:
        paths.append(BundleId(full_bundles, size % TILE_WIDTH))
    return paths
