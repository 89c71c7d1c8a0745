"""The Merkle tree against the RFC 6962 vectors, transparency-dev's proof probes
and a naive reference tree, and every tampered proof refused."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vault.domain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "merkle"
INCLUSION_FILES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "consistency").rglob("*.json"))
RFC6962 = json.loads((VECTORS / "rfc6962.json").read_text())


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(raw: list[str] | None) -> list[bytes]:
    return [_b64(item) for item in raw or []]


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[(bit // 8) % len(changed)] ^= 1 << (bit % 8)
    return bytes(changed)


class Tree:
    """Every complete node of a tree, built level by level by pairwise hashing."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [leaves]
        sha = hashlib.sha256
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            pairs = range(0, len(below) - 1, 2)
            self.levels.append([sha(b"\x01" + below[i] + below[i + 1]).digest() for i in pairs])
        self.lookups: list[tuple[int, int]] = []

    @classmethod
    def of_size(cls, size: int) -> Tree:
        sha = hashlib.sha256
        return cls([sha(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(size)])

    def get_node(self, level: int, index: int) -> bytes:
        self.lookups.append((level, index))
        return self.levels[level][index]

    def reference_root(self, size: int) -> bytes:
        """RFC 9162 MTH(D[0:size]), split at the largest power of two below n."""

        @functools.cache
        def mth(lo: int, hi: int) -> bytes:
            n = hi - lo
            if n == 0:
                return hashlib.sha256(b"").digest()
            if n & (n - 1) == 0:
                return self.levels[n.bit_length() - 1][lo // n]
            k = 1 << ((n - 1).bit_length() - 1)
            return node_hash(mth(lo, lo + k), mth(lo + k, hi))

        return mth(0, size)


@functools.cache
def _naive_leaves() -> tuple[bytes, ...]:
    return tuple(leaf_hash(b"leaf %d" % i) for i in range(2000))


@functools.cache
def _naive_mth(lo: int, hi: int) -> bytes:
    """RFC 9162 MTH straight from its definition (memoised over subranges)."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return _naive_leaves()[lo]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_naive_mth(lo, lo + k), _naive_mth(lo + k, hi))


@pytest.fixture(scope="module")
def tree() -> Tree:
    return Tree(list(_naive_leaves()))


# ------------------------------------------------------------- the vectors


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        _b64(case["leafHash"]), case["leafIdx"], case["treeSize"],
        _proof(case["proof"]), _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        case["size1"], case["size2"], _proof(case["proof"]),
        _b64(case["root1"]), _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_counts() -> None:
    assert len(INCLUSION_FILES) == 98
    assert len(CONSISTENCY_FILES) == 98


def test_rfc6962_hasher() -> None:
    hasher = RFC6962["hasher"]
    assert EMPTY_ROOT.hex() == hasher["empty_tree_hash_hex"]
    assert leaf_hash(b"").hex() == hasher["empty_leaf"]["leaf_hash_hex"]
    assert leaf_hash(b"L123456").hex() == hasher["leaf"]["leaf_hash_hex"]
    assert node_hash(b"N123", b"N456").hex() == hasher["node"]["node_hash_hex"]


def _rfc_tree() -> Tree:
    return Tree([leaf_hash(bytes.fromhex(x)) for x in RFC6962["leaf_inputs_hex"]])


def test_rfc6962_roots_and_nodes() -> None:
    rfc = _rfc_tree()
    levels = RFC6962["node_hashes_hex"]["levels"]
    assert [[h.hex() for h in level] for level in rfc.levels] == levels
    edge, stored = CompactRange(), {}
    for size in range(9):
        want = RFC6962["roots_hex"][str(size)]
        assert edge.root().hex() == want
        assert root_at(size, rfc.get_node).hex() == want
        assert CompactRange.from_lookup(size, rfc.get_node) == edge
        if size < 8:
            edge, completed = edge.append(rfc.levels[0][size])
            stored.update({(lv, ix): h for lv, ix, h in completed})
    assert {k: v.hex() for k, v in stored.items()} == {
        (lv, ix): h for lv, level in enumerate(levels) for ix, h in enumerate(level)
    }


def test_vector_happy_paths_are_the_proofs_we_compute() -> None:
    """Where a probe's tree is the RFC 6962 8-leaf tree, our proof is its proof."""
    rfc, roots, matched = _rfc_tree(), RFC6962["roots_hex"], 0
    for path in INCLUSION_FILES:
        case = json.loads(path.read_text())
        n = case["treeSize"]
        if case["wantErr"] or not 1 <= n <= 8 or _b64(case["root"]).hex() != roots[str(n)]:
            continue
        assert inclusion_proof(case["leafIdx"], n, rfc.get_node) == _proof(case["proof"])
        matched += 1
    for path in CONSISTENCY_FILES:
        case = json.loads(path.read_text())
        m, n = case["size1"], case["size2"]
        if case["wantErr"] or not 1 <= m <= n <= 8 or _b64(case["root2"]).hex() != roots[str(n)]:
            continue
        assert consistency_proof(m, n, rfc.get_node) == _proof(case["proof"])
        matched += 1
    assert matched >= 8


# ------------------------------------------------------ against a reference


def test_compact_range_root_matches_reference_for_every_size(tree: Tree) -> None:
    edge, completed = CompactRange(), []
    for size in range(1, 2001):
        edge, nodes = edge.append(tree.levels[0][size - 1])
        completed += nodes
        assert edge.root() == _naive_mth(0, size), size
        assert edge.size == size
    assert CompactRange.from_lookup(2000, tree.get_node) == edge
    assert sorted(completed) == sorted(
        (lv, ix, h) for lv, level in enumerate(tree.levels) for ix, h in enumerate(level)
    )


def _inclusion_cases(rng: random.Random) -> Iterator[tuple[int, int]]:
    yield from ((i, n) for n in range(1, 65) for i in range(n))
    for _ in range(400):
        n = rng.randrange(65, 2001)
        yield rng.randrange(n), n
    yield from ((0, 2000), (1999, 2000), (1023, 1024), (1024, 1025))


def _consistency_cases(rng: random.Random) -> Iterator[tuple[int, int]]:
    yield from ((m, n) for n in range(1, 65) for m in range(1, n + 1))
    for _ in range(400):
        n = rng.randrange(65, 2001)
        yield rng.randrange(1, n + 1), n
    yield from ((1, 2000), (1999, 2000), (1024, 2000), (1023, 1024), (1024, 1025))


def _refused(check: Callable[..., None], *args: Any) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


def _check_inclusion(tree: Tree, index: int, size: int, limit: int) -> None:
    leaf, root = tree.levels[0][index], tree.reference_root(size)
    tree.lookups.clear()
    proof = inclusion_proof(index, size, tree.get_node)
    assert set(tree.lookups) == set(inclusion_nodes(index, size))
    verify_inclusion(leaf, index, size, proof, root)
    assert root_from_inclusion(leaf, index, size, proof) == root
    case = f"index {index} size {size}"
    for pos, item in enumerate(proof):
        bad = [*proof[:pos], _flip(item, pos * 31 + index), *proof[pos + 1:]]
        assert _refused(verify_inclusion, leaf, index, size, bad, root), case
    assert _refused(verify_inclusion, leaf, index, size, proof, _flip(root, size)), case
    assert _refused(verify_inclusion, _flip(leaf, index), index, size, proof, root)
    assert _refused(verify_inclusion, leaf, index, size, [*proof, root], root), case
    if proof:
        assert _refused(verify_inclusion, leaf, index, size, proof[:-1], root), case
    for other in {index - 1, index + 1, index ^ 1, size} - {index}:
        assert _refused(verify_inclusion, leaf, other, size, proof, root), (case, other)
    for other in {size - 1, size + 1, size * 2, size // 2} - {size}:
        if not index < other <= limit:
            continue
        other_root = tree.reference_root(other)
        if inclusion_proof(index, other, tree.get_node) == proof:
            verify_inclusion(leaf, index, other, proof, other_root)
        else:
            assert _refused(verify_inclusion, leaf, index, other, proof, other_root)


def _check_consistency(tree: Tree, size1: int, size2: int, limit: int) -> None:
    root1, root2 = tree.reference_root(size1), tree.reference_root(size2)
    tree.lookups.clear()
    proof = consistency_proof(size1, size2, tree.get_node)
    assert set(tree.lookups) == set(consistency_nodes(size1, size2))
    verify_consistency(size1, size2, proof, root1, root2)
    case = f"size1 {size1} size2 {size2}"
    for pos, item in enumerate(proof):
        bad = [*proof[:pos], _flip(item, pos * 31 + size1), *proof[pos + 1:]]
        assert _refused(verify_consistency, size1, size2, bad, root1, root2), case
    assert _refused(verify_consistency, size1, size2, proof, _flip(root1, 7), root2)
    assert _refused(verify_consistency, size1, size2, proof, root1, _flip(root2, 9))
    assert _refused(verify_consistency, size1, size2, [*proof, root1], root1, root2)
    if proof:
        assert _refused(verify_consistency, size1, size2, proof[:-1], root1, root2)
    if size1 != size2:
        assert _refused(verify_consistency, size1, size2, proof, root2, root1), case
    for m, n in {(size1 - 1, size2), (size1 + 1, size2), (size1, size2 - 1),
                 (size1, size2 + 1), (size1, size2 * 2), (size1 // 2, size2)}:
        if (m, n) == (size1, size2) or max(m, n) > limit:
            continue
        r1 = tree.reference_root(m) if m >= 0 else root1
        r2 = tree.reference_root(n)
        if 0 < m <= n and consistency_proof(m, n, tree.get_node) == proof:
            verify_consistency(m, n, proof, r1, r2)
        else:
            assert _refused(verify_consistency, m, n, proof, r1, r2), (case, m, n)


def test_inclusion_proofs_verify_and_tampering_is_refused(tree: Tree) -> None:
    for index, size in _inclusion_cases(random.Random(9162)):
        _check_inclusion(tree, index, size, 2000)


def test_consistency_proofs_verify_and_tampering_is_refused(tree: Tree) -> None:
    for size1, size2 in _consistency_cases(random.Random(6962)):
        _check_consistency(tree, size1, size2, 2000)


def test_every_bit_of_every_hash_matters(tree: Tree) -> None:
    for index, size in ((5, 13), (0, 1), (12, 13)):
        leaf, root = tree.levels[0][index], tree.reference_root(size)
        proof = inclusion_proof(index, size, tree.get_node)
        for pos, item in enumerate(proof):
            for bit in range(256):
                bad = [*proof[:pos], _flip(item, bit), *proof[pos + 1:]]
                assert _refused(verify_inclusion, leaf, index, size, bad, root)
        for bit in range(256):
            assert _refused(verify_inclusion, leaf, index, size, proof, _flip(root, bit))
    for size1, size2 in ((3, 7), (4, 13)):
        r1, r2 = tree.reference_root(size1), tree.reference_root(size2)
        proof = consistency_proof(size1, size2, tree.get_node)
        for pos, item in enumerate(proof):
            for bit in range(256):
                bad = [*proof[:pos], _flip(item, bit), *proof[pos + 1:]]
                assert _refused(verify_consistency, size1, size2, bad, r1, r2)


def test_large_trees() -> None:
    big = Tree.of_size(1_000_003)
    for size in (65536 + 17, 1_000_003):
        root = big.reference_root(size)
        assert root_at(size, big.get_node) == root
        assert CompactRange.from_lookup(size, big.get_node).root() == root
        for index in (0, 1, 65535, 65536, size // 3, size - 2, size - 1):
            _check_inclusion(big, index, size, size)
        for size1 in (1, 2, 65535, 65536, 65537, size // 3, size - 1, size):
            _check_consistency(big, size1, size, size)
    edge = CompactRange.from_lookup(65530, big.get_node)
    edge, _ = edge.extend(big.levels[0][65530:65553])
    assert edge.root() == big.reference_root(65553)


def test_bad_proof_requests_are_refused(tree: Tree) -> None:
    for index, size in ((0, 0), (5, 5), (-1, 3)):
        with pytest.raises(ProofError):
            inclusion_proof(index, size, tree.get_node)
        with pytest.raises(ProofError):
            inclusion_nodes(index, size)
    for size1, size2 in ((0, 0), (0, 3), (4, 3)):
        with pytest.raises(ProofError):
            consistency_proof(size1, size2, tree.get_node)
        with pytest.raises(ProofError):
            consistency_nodes(size1, size2)
    assert consistency_proof(7, 7, tree.get_node) == []
    assert inclusion_proof(0, 1, tree.get_node) == []
    assert root_at(0, tree.get_node) == EMPTY_ROOT
    with pytest.raises(ValueError):
        CompactRange(3, (EMPTY_ROOT,))
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


def test_errors_say_which_check_failed(tree: Tree) -> None:
    leaf, root = tree.levels[0][2], tree.reference_root(5)
    proof = inclusion_proof(2, 5, tree.get_node)
    with pytest.raises(ProofError, match="not in a tree of size 5"):
        verify_inclusion(leaf, 5, 5, proof, root)
    with pytest.raises(ProofError, match="has 2 hashes, want 3"):
        verify_inclusion(leaf, 2, 5, proof[:2], root)
    with pytest.raises(ProofError, match="does not match"):
        verify_inclusion(leaf, 2, 5, proof, EMPTY_ROOT)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, [], EMPTY_ROOT, root)
    with pytest.raises(ProofError, match="smaller than size1"):
        verify_consistency(5, 4, [], root, root)
