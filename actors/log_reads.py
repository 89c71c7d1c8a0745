"""Reads of the verifiable log: checkpoint, tiles, entry bundles, proofs, receipts.

Like ``reads.py`` these change nothing, so they go straight to the store
in a worker thread through the database limiter. Proofs are built from the
few tiles they need (``vault.domain.log.TileSet``), never by rebuilding
the tree: a receipt at a million leaves reads three or four tiles.

``evidence_for`` is what the verifier reads of the log for one document;
``vault.domain.lifecycle.log_problem`` judges it.

What the outside sees is the *published* checkpoint (``published``): with
witnesses configured, the latest that met their quorum, with its
cosignature lines; with none, the latest signed. Receipts, the checkpoint
route and consistency proofs all stop there. A receipt also carries, per
kind, the first anchor (RFC 3161 token, EVM transaction) whose checkpoint
holds the leaf, with a consistency proof between that checkpoint and the
receipt's.
"""

from __future__ import annotations

from uuid import UUID

import attrs

from actors.deps import Backends
from vault.domain.checkpoint import TlogProof
from vault.domain.errors import InvalidRequest, LedgerNotFound
from vault.domain.lifecycle import LogEvidence
from vault.domain.log import StoredLeaf, TileSet, tile_bytes, tiles_for
from vault.domain.merkle import (
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
)
from vault.domain.models import Document
from vault.domain.publication import PublishedCheckpoint, StoredAnchor
from vault.domain.tiles import TILE_WIDTH, encode_bundle
from vault.ports import MetadataStore

MAX_LEAVES = 2**63 - 1
"""No tree is larger (the databases' BIGINT): coordinates beyond it name nothing, and
are answered without asking the store (its drivers refuse such integers)."""


@attrs.frozen
class Consistency:
    size1: int
    size2: int
    hashes: tuple[bytes, ...]


@attrs.frozen
class ReceiptAnchor:
    """An anchored checkpoint holding the leaf, and how it is one history with the receipt's."""

    anchor: StoredAnchor
    consistency: Consistency


@attrs.frozen
class Receipt:
    """A document's ``registered`` leaf with its inclusion proof under a published checkpoint."""

    document_id: UUID
    leaf: bytes
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str
    anchors: tuple[ReceiptAnchor, ...] = ()

    def tlog_proof(self) -> str:
        """The same proof as a C2SP tlog-proof, the leaf as its extra data."""
        return TlogProof(
            extra=self.leaf, index=self.leaf_index, hashes=self.inclusion_proof,
            checkpoint=self.checkpoint,
        ).format()


@attrs.frozen
class ReceiptPending:
    """The leaf is not yet under a checkpoint; ask again after ``retry_after`` seconds."""

    retry_after: int


def published(store: MetadataStore, witnessed: bool) -> PublishedCheckpoint | None:
    """The checkpoint the outside sees: the latest at quorum, or the latest signed. Blocks."""
    if witnessed:
        return store.latest_published()
    latest = store.latest_checkpoint()
    if latest is None:
        return None
    return PublishedCheckpoint(latest.size, latest.note, latest.signed_at)


def published_of_size(
    store: MetadataStore, size: int, witnessed: bool
) -> PublishedCheckpoint | None:
    if witnessed:
        return store.published_at(size)
    found = store.checkpoint_at(size)
    return None if found is None else PublishedCheckpoint(found.size, found.note, found.signed_at)


def proof_between(store: MetadataStore, size1: int, size2: int) -> Consistency:
    """The consistency proof between two tree sizes (either order), from the tiles. Blocks."""
    low, high = sorted((size1, size2))
    if low == high:
        return Consistency(low, high, ())
    tiles = TileSet(store.ledger_tiles(tiles_for(consistency_nodes(low, high))))
    return Consistency(low, high, tuple(consistency_proof(low, high, tiles.get_node)))


def inclusion(store: MetadataStore, index: int, size: int) -> tuple[tuple[bytes, ...], bytes]:
    """Leaf ``index``'s proof in the tree of ``size``, and the hash the tree holds for it.

    ``LookupError`` (``MissingTile``) when the tiles do not hold them. Blocks.
    """
    nodes = [*inclusion_nodes(index, size), (0, index)]
    tiles = TileSet(store.ledger_tiles(tiles_for(nodes)))
    return tuple(inclusion_proof(index, size, tiles.get_node)), tiles.get_node(0, index)


def evidence_for(store: MetadataStore, doc: Document) -> LogEvidence:
    """Everything the log holds on ``doc``'s registration. Blocks."""
    leaf = store.registered_leaf(doc.id)
    checkpoint = store.latest_checkpoint()
    legacy = None
    if doc.on_chain_reference is not None:
        entry = store.ledger_entry(doc.on_chain_reference)
        if entry is not None:
            legacy = (entry, store.ledger_predecessor(entry))
    evidence = LogEvidence(leaf=leaf, checkpoint=checkpoint, legacy=legacy)
    if not evidence.under_checkpoint:
        return evidence
    assert leaf is not None and leaf.leaf_index is not None and checkpoint is not None
    try:
        proof, tree_leaf = inclusion(store, leaf.leaf_index, checkpoint.size)
    except LookupError:
        return evidence
    return attrs.evolve(evidence, proof=proof, tree_leaf_hash=tree_leaf)


def _receipt(
    store: MetadataStore, document_id: UUID, size: int | None, retry_after: int,
    witnessed: bool = False,
) -> Receipt | ReceiptPending:
    leaf: StoredLeaf | None = store.registered_leaf(document_id)
    if leaf is None:
        raise LedgerNotFound(f"Document {document_id} has no registered leaf in the log")
    checkpoint: PublishedCheckpoint | None
    if size is None:
        checkpoint = published(store, witnessed)
        if checkpoint is None or leaf.leaf_index is None or leaf.leaf_index >= checkpoint.size:
            return ReceiptPending(retry_after)
    else:
        checkpoint = None if size > MAX_LEAVES else published_of_size(store, size, witnessed)
        if checkpoint is None:
            what = "published checkpoint" if witnessed else "checkpoint"
            raise InvalidRequest.field("query", "size", f"no {what} of size {size}")
        if leaf.leaf_index is None or leaf.leaf_index >= size:
            raise InvalidRequest.field(
                "query", "size", f"the document's leaf is not in the tree of size {size}"
            )
    proof, _ = inclusion(store, leaf.leaf_index, checkpoint.size)
    anchors = tuple(
        ReceiptAnchor(found, proof_between(store, checkpoint.size, found.size))
        for found in store.anchors_covering(leaf.leaf_index)
    )
    return Receipt(
        document_id=document_id, leaf=leaf.leaf, leaf_index=leaf.leaf_index,
        tree_size=checkpoint.size, inclusion_proof=proof, checkpoint=checkpoint.note,
        anchors=anchors,
    )


def _consistency(
    store: MetadataStore, size1: int, size2: int | None, witnessed: bool = False
) -> Consistency:
    latest = published(store, witnessed)
    top = 0 if latest is None else latest.size
    size2 = top if size2 is None else size2
    if not 1 <= size1 <= size2 <= top:
        raise InvalidRequest.field(
            "query", "from", f"need 1 <= from <= to <= {top} (the published checkpoint's size)"
        )
    return proof_between(store, size1, size2)


def _tile(store: MetadataStore, level: int, index: int, width: int) -> bytes:
    if index * TILE_WIDTH ** (level + 1) > MAX_LEAVES:
        raise LedgerNotFound(f"tile {level}/{index} is beyond any tree")
    stored = store.ledger_tiles([(level, index)]).get((level, index))
    found = None if stored is None else tile_bytes(stored, width)
    if found is None:
        raise LedgerNotFound(f"tile {level}/{index} of width {width} is beyond the tree")
    return found


def _bundle(store: MetadataStore, index: int, width: int) -> bytes:
    start = index * TILE_WIDTH
    if start + width > MAX_LEAVES:
        raise LedgerNotFound(f"entry bundle {index} is beyond any tree")
    leaves = store.ledger_leaves(start, start + width)
    if len(leaves) < width:
        raise LedgerNotFound(f"entry bundle {index} of width {width} is beyond the tree")
    return encode_bundle(leaves)


class LogReads:
    """The log's public side, for the HTTP layer."""

    def __init__(self, backends: Backends, *, retry_after: int, witnessed: bool = False) -> None:
        self.backends = backends
        self.retry_after = retry_after
        self.witnessed = witnessed
        """Whether checkpoints are published at a witness quorum (else: once signed)."""

    async def checkpoint(self) -> PublishedCheckpoint | None:
        return await self.backends.in_db(published, self.backends.store, self.witnessed)

    async def tile(self, level: int, index: int, width: int) -> bytes:
        """Hash tile ``(level, index)`` with ``width`` hashes (256: the full tile)."""
        return await self.backends.in_db(_tile, self.backends.store, level, index, width)

    async def bundle(self, index: int, width: int) -> bytes:
        return await self.backends.in_db(_bundle, self.backends.store, index, width)

    async def consistency(self, size1: int, size2: int | None) -> Consistency:
        return await self.backends.in_db(
            _consistency, self.backends.store, size1, size2, self.witnessed
        )

    async def receipt(self, document_id: UUID, size: int | None) -> Receipt | ReceiptPending:
        return await self.backends.in_db(
            _receipt, self.backends.store, document_id, size, self.retry_after, self.witnessed
        )
