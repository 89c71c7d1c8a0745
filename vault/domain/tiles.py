"""The ledger's tree as C2SP tlog-tiles: paths, which tiles exist, their bytes.

A tile at level ``L`` and index ``N`` holds the hashes of the tree's nodes at
level ``8 * L`` numbered ``256 * N`` to ``256 * N + 255``, concatenated; an
entry bundle ``N`` holds leaves ``256 * N`` onwards, each prefixed with its
big-endian uint16 length. Only the last tile of a level may be partial: for
a tree of size ``s`` the level-``L`` partial tile has
``floor(s / 256**L) mod 256`` hashes, and a path names its width as
``.p/<W>``. Every other node of the tree (levels between multiples of 8) is
the hash of a run of one tile's hashes; ``node_in_tile`` says which run.

Paths are parsed strictly: a path names exactly one tile, so leading zeroes
in the level or width, ``x000`` groups, a width of 0 or over 255 and an
index past 2**64 are refused with ``TilePathError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import attrs

from vault.domain.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
MAX_INDEX = (1 << 64) - 1
MAX_LEAF_SIZE = 0xFFFF
TILE_PREFIX = "tile/"
ENTRIES_PREFIX = "tile/entries/"

_NUMBER = re.compile(r"0|[1-9][0-9]*")
_GROUPS = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")


class TileError(ValueError):
    """Bytes that are not a well-formed tile or entry bundle."""


class TilePathError(ValueError):
    """A path that names no tile or entry bundle."""


@attrs.frozen
class TileId:
    """Hash tile ``(level, index)`` holding ``width`` hashes (256 when full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __attrs_post_init__(self) -> None:
        _check_coordinates(self.level, self.index, self.width)

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width % TILE_WIDTH)


@attrs.frozen
class BundleId:
    """Entry bundle ``index`` holding ``width`` leaves (256 when full)."""

    index: int
    width: int = TILE_WIDTH

    def __attrs_post_init__(self) -> None:
        _check_coordinates(0, self.index, self.width)

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        return entries_path(self.index, self.width % TILE_WIDTH)


def _check_coordinates(level: int, index: int, width: int) -> None:
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"tile level {level} is not in 0..{MAX_LEVEL}")
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"tile index {index} is not a uint64")
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is not in 1..{TILE_WIDTH}")


# ------------------------------------------------------------------- paths


def encode_index(index: int) -> str:
    """``1234067`` → ``x001/x234/067``: 3-digit groups, all but the last prefixed ``x``."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"tile index {index} is not a uint64")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def with_suffix(index: int, partial: int = 0) -> str:
    """The ``<N>[.p/<W>]`` part of a path; ``partial`` 0 means a full tile."""
    if not 0 <= partial < TILE_WIDTH:
        raise ValueError(f"partial width {partial} is not in 0..{TILE_WIDTH - 1}")
    encoded = encode_index(index)
    return f"{encoded}.p/{partial}" if partial else encoded


def tile_path(level: int, index: int, partial: int = 0) -> str:
    """``tile/<L>/<N>[.p/<W>]``; ``partial`` 0 means a full tile."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"tile level {level} is not in 0..{MAX_LEVEL}")
    return f"{TILE_PREFIX}{level}/{with_suffix(index, partial)}"


def entries_path(index: int, partial: int = 0) -> str:
    """``tile/entries/<N>[.p/<W>]``; ``partial`` 0 means a full bundle."""
    return f"{ENTRIES_PREFIX}{with_suffix(index, partial)}"


def entries_path_for_leaf(leaf_index: int, size: int) -> str:
    """The path of the bundle holding leaf ``leaf_index`` in a tree of ``size`` leaves."""
    if not 0 <= leaf_index < size:
        raise ValueError(f"leaf {leaf_index} is not in a tree of size {size}")
    bundle = leaf_index // TILE_WIDTH
    return entries_path(bundle, min(size - bundle * TILE_WIDTH, TILE_WIDTH) % TILE_WIDTH)


def _parse_number(text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise TilePathError(f"{what} {text!r} is not a decimal number without leading zeroes")
    return int(text)


def parse_index(text: str) -> tuple[int, int]:
    """``<N>[.p/<W>]`` → ``(index, width)``, width 256 for a full tile."""
    encoded, dot, partial = text.partition(".p/")
    if not dot and ".p" in text:
        raise TilePathError(f"{text!r} has a malformed partial suffix")
    width = TILE_WIDTH
    if dot:
        width = _parse_number(partial, "partial width")
        if not 1 <= width < TILE_WIDTH:
            raise TilePathError(f"partial width {width} is not in 1..{TILE_WIDTH - 1}")
    if not _GROUPS.fullmatch(encoded):
        raise TilePathError(f"{encoded!r} is not a tile index like x001/x234/067")
    index = int(encoded.replace("x", "").replace("/", ""))
    if index > MAX_INDEX:
        raise TilePathError(f"tile index {encoded!r} is not a uint64")
    if encode_index(index) != encoded:
        raise TilePathError(f"{encoded!r} is not the canonical form of index {index}")
    return index, width


def parse_level_index(level_text: str, index_text: str) -> TileId:
    """The tile that route pieces ``<L>`` and ``<N>[.p/<W>]`` name."""
    level = _parse_number(level_text, "tile level")
    if level > MAX_LEVEL:
        raise TilePathError(f"tile level {level} is not in 0..{MAX_LEVEL}")
    index, width = parse_index(index_text)
    return TileId(level, index, width)


def parse_path(path: str) -> TileId | BundleId:
    """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` → what it names."""
    if path.startswith(ENTRIES_PREFIX):
        return BundleId(*parse_index(path[len(ENTRIES_PREFIX):]))
    if not path.startswith(TILE_PREFIX):
        raise TilePathError(f"{path!r} does not start with {TILE_PREFIX!r}")
    level_text, slash, index_text = path[len(TILE_PREFIX):].partition("/")
    if not slash:
        raise TilePathError(f"{path!r} has no tile index")
    return parse_level_index(level_text, index_text)


# ------------------------------------------------------------ tree geometry


def level_counts(size: int) -> list[tuple[int, int, int]]:
    """Per tile level of a tree of ``size`` leaves: ``(level, full tiles, partial width)``."""
    if size < 0:
        raise ValueError(f"a tree cannot have {size} leaves")
    counts: list[tuple[int, int, int]] = []
    level, nodes = 0, size
    while nodes:
        counts.append((level, nodes // TILE_WIDTH, nodes % TILE_WIDTH))
        level, nodes = level + 1, nodes >> TILE_HEIGHT
    return counts


def tiles_for_size(size: int) -> Iterator[TileId]:
    """Every hash tile of a tree of ``size`` leaves, level by level, full then partial."""
    for level, full, partial in level_counts(size):
        for index in range(full):
            yield TileId(level, index)
        if partial:
            yield TileId(level, full, partial)


def bundles_for_size(size: int) -> Iterator[BundleId]:
    """Every entry bundle of a tree of ``size`` leaves."""
    for index in range(size // TILE_WIDTH):
        yield BundleId(index)
    if size % TILE_WIDTH:
        yield BundleId(size // TILE_WIDTH, size % TILE_WIDTH)


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile ``(level, index)`` has in a tree of ``size``; 0 beyond it."""
    nodes = size >> (TILE_HEIGHT * level)
    return max(0, min(nodes - index * TILE_WIDTH, TILE_WIDTH))


def tile_of_node(level: int, index: int) -> tuple[int, int, int]:
    """Where a stored node lives: ``(tile level, tile index, position)``; level % 8 == 0."""
    if level % TILE_HEIGHT:
        raise ValueError(f"level {level} nodes are not stored in tiles")
    return level // TILE_HEIGHT, index // TILE_WIDTH, index % TILE_WIDTH


def node_in_tile(level: int, index: int) -> tuple[int, int, int, int]:
    """Node ``(level, index)`` as ``(tile level, tile index, start, end)``.

    The node is the Merkle root of that tile's hashes ``[start, end)`` (one
    hash, itself, when its level is a multiple of 8).
    """
    tile_level, height = divmod(level, TILE_HEIGHT)
    span = 1 << height
    first = index << height
    return tile_level, first // TILE_WIDTH, first % TILE_WIDTH, first % TILE_WIDTH + span


# ------------------------------------------------------------------- bytes


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    """A tile's bytes: its 1 to 256 hashes, concatenated."""
    if not 1 <= len(hashes) <= TILE_WIDTH:
        raise TileError(f"a tile holds 1 to {TILE_WIDTH} hashes, not {len(hashes)}")
    if any(len(value) != HASH_SIZE for value in hashes):
        raise TileError(f"every hash in a tile is {HASH_SIZE} bytes")
    return b"".join(hashes)


def decode_tile(data: bytes, width: int | None = None) -> list[bytes]:
    """A tile's hashes; ``width``, when given, is how many there must be."""
    count, rest = divmod(len(data), HASH_SIZE)
    if rest or not 1 <= count <= TILE_WIDTH:
        raise TileError(f"{len(data)} bytes are not 1 to {TILE_WIDTH} hashes")
    if width is not None and count != width:
        raise TileError(f"the tile has {count} hashes, want {width}")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(leaves: Sequence[bytes]) -> bytes:
    """An entry bundle's bytes: each of 1 to 256 leaves after its uint16 BE length."""
    if not 1 <= len(leaves) <= TILE_WIDTH:
        raise TileError(f"a bundle holds 1 to {TILE_WIDTH} leaves, not {len(leaves)}")
    parts: list[bytes] = []
    for leaf in leaves:
        if len(leaf) > MAX_LEAF_SIZE:
            raise TileError(f"a {len(leaf)}-byte leaf is over {MAX_LEAF_SIZE} bytes")
        parts += (len(leaf).to_bytes(2, "big"), leaf)
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """An entry bundle's leaves; ``width``, when given, is how many there must be."""
    leaves: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise TileError(f"truncated length prefix at byte {offset}")
        length = int.from_bytes(data[offset:offset + 2], "big")
        offset += 2
        if len(data) - offset < length:
            raise TileError(f"leaf {len(leaves)} wants {length} bytes, {len(data) - offset} left")
        leaves.append(data[offset:offset + length])
        offset += length
    if not 1 <= len(leaves) <= TILE_WIDTH:
        raise TileError(f"a bundle holds 1 to {TILE_WIDTH} leaves, not {len(leaves)}")
    if width is not None and len(leaves) != width:
        raise TileError(f"the bundle has {len(leaves)} leaves, want {width}")
    return leaves
