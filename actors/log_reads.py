"""Reads of the verifiable log: checkpoint, tiles, entry bundles, proofs, receipts.

Like ``reads.py`` these change nothing, so they go straight to the store
in a worker thread through the database limiter. Proofs are built from the
few tiles they need (``vault.domain.log.TileSet``), never by rebuilding
the tree: a receipt at a million leaves reads three or four tiles.

``evidence_for`` is what the verifier reads of the log for one document;
``vault.domain.lifecycle.log_problem`` judges it.
"""

from __future__ import annotations

from uuid import UUID

import attrs

from actors.deps import Backends
from vault.domain.checkpoint import TlogProof
from vault.domain.errors import InvalidRequest, LedgerNotFound
from vault.domain.lifecycle import LogEvidence
from vault.domain.log import SignedCheckpoint, StoredLeaf, TileSet, tile_bytes, tiles_for
from vault.domain.merkle import (
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
)
from vault.domain.models import Document
from vault.domain.tiles import TILE_WIDTH, encode_bundle
from vault.ports import MetadataStore

MAX_LEAVES = 2**63 - 1
"""No tree is larger (the databases' BIGINT): coordinates beyond it name nothing, and
are answered without asking the store (its drivers refuse such integers)."""


@attrs.frozen
class Receipt:
    """A document's ``registered`` leaf with its inclusion proof under a signed checkpoint."""

    document_id: UUID
    leaf: bytes
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str

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


@attrs.frozen
class Consistency:
    size1: int
    size2: int
    hashes: tuple[bytes, ...]


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
    store: MetadataStore, document_id: UUID, size: int | None, retry_after: int
) -> Receipt | ReceiptPending:
    leaf: StoredLeaf | None = store.registered_leaf(document_id)
    if leaf is None:
        raise LedgerNotFound(f"Document {document_id} has no registered leaf in the log")
    checkpoint: SignedCheckpoint | None
    if size is None:
        checkpoint = store.latest_checkpoint()
        if checkpoint is None or leaf.leaf_index is None or leaf.leaf_index >= checkpoint.size:
            return ReceiptPending(retry_after)
    else:
        checkpoint = None if size > MAX_LEAVES else store.checkpoint_at(size)
        if checkpoint is None:
            raise InvalidRequest.field("query", "size", f"no checkpoint of size {size}")
        if leaf.leaf_index is None or leaf.leaf_index >= size:
            raise InvalidRequest.field(
                "query", "size", f"the document's leaf is not in the tree of size {size}"
            )
    proof, _ = inclusion(store, leaf.leaf_index, checkpoint.size)
    return Receipt(
        document_id=document_id, leaf=leaf.leaf, leaf_index=leaf.leaf_index,
        tree_size=checkpoint.size, inclusion_proof=proof, checkpoint=checkpoint.note,
    )


def _consistency(store: MetadataStore, size1: int, size2: int | None) -> Consistency:
    latest = store.latest_checkpoint()
    top = 0 if latest is None else latest.size
    size2 = top if size2 is None else size2
    if not 1 <= size1 <= size2 <= top:
        raise InvalidRequest.field(
            "query", "from", f"need 1 <= from <= to <= {top} (the latest checkpoint's size)"
        )
    if size1 == size2:
        return Consistency(size1, size2, ())
    nodes = consistency_nodes(size1, size2)
    tiles = TileSet(store.ledger_tiles(tiles_for(nodes)))
    return Consistency(size1, size2, tuple(consistency_proof(size1, size2, tiles.get_node)))


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

    def __init__(self, backends: Backends, *, retry_after: int) -> None:
        self.backends = backends
        self.retry_after = retry_after

    async def checkpoint(self) -> SignedCheckpoint | None:
        return await self.backends.in_db(self.backends.store.latest_checkpoint)

    async def tile(self, level: int, index: int, width: int) -> bytes:
        """Hash tile ``(level, index)`` with ``width`` hashes (256: the full tile)."""
        return await self.backends.in_db(_tile, self.backends.store, level, index, width)

    async def bundle(self, index: int, width: int) -> bytes:
        return await self.backends.in_db(_bundle, self.backends.store, index, width)

    async def consistency(self, size1: int, size2: int | None) -> Consistency:
        return await self.backends.in_db(_consistency, self.backends.store, size1, size2)

    async def receipt(self, document_id: UUID, size: int | None) -> Receipt | ReceiptPending:
        return await self.backends.in_db(
            _receipt, self.backends.store, document_id, size, self.retry_after
        )
