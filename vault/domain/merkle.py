"""The ledger's Merkle tree: RFC 9162 §2.1 hashing, proofs and their checks.

A node is named ``(level, index)``: it covers the leaves
``[index * 2**level, (index + 1) * 2**level)``, and level 0 holds the leaf
hashes. Only nodes of *complete* subtrees are ever stored; a tree whose size
is not a power of two has a ragged right edge whose hashes are computed
from complete ones when they are needed.

*Growing the tree*: ``CompactRange`` is the right edge of a tree, the roots
of its complete subtrees from the largest down. Appending a leaf answers the
new range and the nodes that just became complete, so a store persists them
(into tiles) without reading the tree back; ``root`` is the tree's hash.

*Proving*: ``root_at``, ``inclusion_proof`` and ``consistency_proof`` take a
``get_node(level, index)`` lookup of complete nodes and build the RFC 9162
shapes exactly. ``inclusion_nodes`` and ``consistency_nodes`` say which
nodes that will be, so a store can fetch them in one batch first.

*Verifying*: ``verify_inclusion`` and ``verify_consistency`` follow RFC 9162
§2.1.3.2 and §2.1.4.2, behave as transparency-dev/merkle does on its test
vectors, and raise ``ProofError`` saying which check failed. A proof whose
length is not the one its sizes imply is refused before any hashing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

import attrs

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeLookup = Callable[[int, int], bytes]
"""``get_node(level, index)``: the hash of a complete subtree's root."""

Node = tuple[int, int, bytes]
"""``(level, index, hash)`` of a node that has become complete."""


class ProofError(ValueError):
    """A proof does not hold, or its arguments cannot describe one."""


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 ‖ leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# ---------------------------------------------------------------- the right edge


def range_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The fewest complete nodes covering the leaves ``[start, end)``, left to right."""
    if not 0 <= start <= end:
        raise ValueError(f"not a range of leaves: [{start}, {end})")
    nodes: list[tuple[int, int]] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash a right edge (subtree roots, largest first) into one root."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


@attrs.frozen
class CompactRange:
    """The roots of a tree's complete subtrees, largest first: enough to grow it."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a tree of size {self.size} has {self.size.bit_count()} edge hashes")

    @staticmethod
    def edge_nodes(size: int) -> list[tuple[int, int]]:
        """The ``(level, index)`` of the right-edge nodes of a tree of ``size`` leaves."""
        return range_nodes(0, size)

    @classmethod
    def from_lookup(cls, size: int, get_node: NodeLookup) -> CompactRange:
        """The right edge of a stored tree, read from its complete nodes."""
        return cls(size, tuple(get_node(lv, ix) for lv, ix in cls.edge_nodes(size)))

    def append(self, leaf: bytes) -> tuple[CompactRange, list[Node]]:
        """Add one leaf hash; answer the new range and the nodes it completed, lowest first."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        edge = list(self.hashes)
        level, index, current = 0, self.size, leaf
        completed: list[Node] = [(0, index, leaf)]
        remaining = self.size
        while remaining & 1:
            current = node_hash(edge.pop(), current)
            level, index, remaining = level + 1, index >> 1, remaining >> 1
            completed.append((level, index, current))
        edge.append(current)
        return CompactRange(self.size + 1, tuple(edge)), completed

    def extend(self, leaves: Iterable[bytes]) -> tuple[CompactRange, list[Node]]:
        """Append several leaf hashes in order; the nodes completed by all of them."""
        current, completed = self, []
        for leaf in leaves:
            current, nodes = current.append(leaf)
            completed.extend(nodes)
        return current, completed

    def root(self) -> bytes:
        """The tree's hash, ``EMPTY_ROOT`` for no leaves."""
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT


# ------------------------------------------------------------- proof shapes


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 ``PATH(index, D[0:size])`` as leaf ranges, bottom up."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 9162 ``PROOF(size1, D[0:size2])`` as leaf ranges, bottom up."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _check_inclusion_args(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")


def _check_consistency_args(size1: int, size2: int) -> None:
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")


def _nodes_of(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}
    for start, end in ranges:
        seen.update(dict.fromkeys(range_nodes(start, end)))
    return list(seen)


def _range_hash(start: int, end: int, get_node: NodeLookup) -> bytes:
    return _fold([get_node(level, index) for level, index in range_nodes(start, end)])


def inclusion_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """The complete nodes ``inclusion_proof(index, size, …)`` will look up."""
    _check_inclusion_args(index, size)
    return _nodes_of(_inclusion_ranges(index, size))


def consistency_nodes(size1: int, size2: int) -> list[tuple[int, int]]:
    """The complete nodes ``consistency_proof(size1, size2, …)`` will look up."""
    _check_consistency_args(size1, size2)
    return _nodes_of(_consistency_ranges(size1, size2))


def root_at(size: int, get_node: NodeLookup) -> bytes:
    """The hash of the tree's first ``size`` leaves."""
    if size < 0:
        raise ValueError(f"a tree cannot have {size} leaves")
    return _range_hash(0, size, get_node) if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, get_node: NodeLookup) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves, bottom up."""
    _check_inclusion_args(index, size)
    return [_range_hash(a, b, get_node) for a, b in _inclusion_ranges(index, size)]


def consistency_proof(size1: int, size2: int, get_node: NodeLookup) -> list[bytes]:
    """The proof that the tree of ``size2`` leaves extends the one of ``size1``."""
    _check_consistency_args(size1, size2)
    return [_range_hash(a, b, get_node) for a, b in _consistency_ranges(size1, size2)]


# ------------------------------------------------------------- verification


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(hashes):
        if len(value) != HASH_SIZE:
            raise ProofError(f"{what} hash {position} is {len(value)} bytes, not {HASH_SIZE}")


def _match(what: str, calculated: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(calculated, expected):
        raise ProofError(f"calculated {what} {calculated.hex()} does not match {expected.hex()}")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` gives leaf hash ``leaf`` at ``index`` in a tree of ``size``."""
    _check_inclusion_args(index, size)
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"the leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
    want = len(_inclusion_ranges(index, size))
    if len(proof) != want:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, want {want}")
    _check_hashes("inclusion proof", proof)
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is high")
    return result


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` puts leaf hash ``leaf`` at ``index`` under ``root``."""
    _match("root", root_from_inclusion(leaf, index, size, proof), root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``(size2, root2)`` extends ``(size1, root1)``.

    As in transparency-dev/merkle: ``size1`` must be at least 1 (a proof from
    the empty tree says nothing, so even 0 → 0 is refused); equal sizes need
    an empty proof and equal roots.
    """
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 <= 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal, but the proof is not empty")
        _match("root", root1, root2)
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    want = len(_consistency_ranges(size1, size2))
    if len(proof) != want:
        raise ProofError(f"consistency proof has {len(proof)} hashes, want {want}")
    _check_hashes("consistency proof", proof)
    # A complete old tree is not in its proof: it is its own seed.
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is high")
    _match("old root", fr, root1)
    _match("new root", sr, root2)
