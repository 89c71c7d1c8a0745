"""What happens to a stored document: what a verification concludes, what archiving does.

*Verification* compares the hash of the bytes a download would serve now
with the hash the row records, and checks the document's ``registered``
leaf in the log (``log_problem``): the leaf, the leaf store's hash, the
row's reference, the tree and the signed checkpoint must all agree. Any
difference, or bytes that could not be read at all, is a mismatch;
``conclude`` says which.
Recording the verdict never un-archives: an archived document keeps its
status and gains only who verified it and when.

*Archiving* is a soft delete and idempotent: archiving an archived
document changes nothing (``archived`` answers None), so nothing new is
announced; a disposed document counts as archived.

*Disposal* (``disposed``) leaves the row as a tombstone once a disposition
destroyed its bytes; a tombstone is never verified again (``DocumentDisposed``).

The stores apply these inside their transactions; the actors gather what
they need (bytes, rows, the log's evidence) and never decide themselves.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from vault.domain.checkpoint import open_checkpoint
from vault.domain.errors import DocumentDisposed
from vault.domain.leaf import Leaf, LeafKind, MalformedLeaf
from vault.domain.ledger import entry_is_consistent
from vault.domain.log import SignedCheckpoint, StoredLeaf, reference_of
from vault.domain.merkle import ProofError, leaf_hash, verify_inclusion
from vault.domain.models import Document, DocumentStatus, LedgerEntry
from vault.domain.note import NoteError, Verifier


@attrs.frozen
class Verdict:
    """What one verification found."""

    intact: bool
    calculated_hash: str | None
    """The hash of what was read, or None when nothing could be read."""
    reason: str | None
    """Why it is a mismatch, in words for the log; None when intact."""

    @property
    def status(self) -> DocumentStatus:
        return DocumentStatus.VERIFIED if self.intact else DocumentStatus.MISMATCH


@attrs.frozen
class LogEvidence:
    """What the verifier read of the log for one document.

    ``leaf`` is the document's ``registered`` leaf as stored; ``checkpoint``
    the latest signed one; ``proof`` the leaf's inclusion proof under it,
    built from the tiles, and ``tree_leaf_hash`` the hash the tiles hold at
    the leaf's index (both None when the tiles could not give them).
    ``legacy`` is the hash-chain entry the document's reference names and
    the entry before it, for documents registered before the log.
    """

    leaf: StoredLeaf | None
    checkpoint: SignedCheckpoint | None
    proof: tuple[bytes, ...] | None = None
    tree_leaf_hash: bytes | None = None
    legacy: tuple[LedgerEntry, LedgerEntry | None] | None = None

    @property
    def under_checkpoint(self) -> bool:
        """The leaf is integrated at an index the latest checkpoint covers."""
        return (
            self.leaf is not None
            and self.leaf.leaf_index is not None
            and self.checkpoint is not None
            and self.leaf.leaf_index < self.checkpoint.size
        )


def conclude(
    doc: Document, calculated_hash: str | None, evidence: LogEvidence, verifier: Verifier
) -> Verdict:
    """The verdict on ``doc`` from the bytes' hash and what the log holds for it.

    ``verifier`` is the log's own key: the checkpoint must carry its signature.
    """
    if calculated_hash is None:
        return Verdict(False, None, "stored object missing or unreadable")
    if calculated_hash != doc.sha256_hash:
        return Verdict(False, calculated_hash, "content hash differs from the recorded hash")
    problem = log_problem(doc, evidence, verifier)
    if problem is not None:
        return Verdict(False, calculated_hash, problem)
    return Verdict(True, calculated_hash, None)


def log_problem(doc: Document, evidence: LogEvidence, verifier: Verifier) -> str | None:
    """What is wrong with ``doc``'s registration in the log, or None when it holds.

    The ``registered`` leaf must name the document and its recorded hash,
    the leaf store's hash must be the leaf's, the document's reference must
    be that hash (or, registered before the log, a sound hash-chain entry),
    the leaf must be in the tree under the latest checkpoint, the tree must
    hold the leaf's hash at its index and hash to the checkpoint's root, and
    the checkpoint must carry the log's signature.
    """
    stored = evidence.leaf
    if stored is None:
        return "registered leaf missing from the log"
    try:
        leaf = Leaf.parse(stored.leaf)
    except MalformedLeaf as exc:
        return f"registered leaf is malformed: {exc}"
    if (
        leaf.kind is not LeafKind.REGISTERED
        or leaf.document_id != doc.id
        or leaf.sha256 != doc.sha256_hash
    ):
        return "registered leaf disagrees with the recorded hash"
    hashed = leaf_hash(stored.leaf)
    if stored.leaf_hash != hashed.hex():
        return "leaf store's hash disagrees with the leaf"
    reference_problem = _reference_problem(doc, reference_of(stored.leaf), evidence.legacy)
    if reference_problem is not None:
        return reference_problem
    checkpoint = evidence.checkpoint
    if checkpoint is None or not evidence.under_checkpoint or stored.leaf_index is None:
        return "registered leaf is not in the tree under the latest checkpoint"
    try:
        signed = open_checkpoint(checkpoint.note, verifier)
    except NoteError:
        return "latest checkpoint does not carry the log's signature"
    if (signed.size, signed.root_hash) != (checkpoint.size, checkpoint.root_hash):
        return "latest checkpoint's stored size or root disagrees with its signed note"
    if evidence.tree_leaf_hash is None or evidence.proof is None:
        return "tree is missing the tiles that prove the leaf"
    if evidence.tree_leaf_hash != hashed:
        return "tree's hash of the leaf disagrees with the leaf"
    try:
        verify_inclusion(
            hashed, stored.leaf_index, checkpoint.size, evidence.proof, checkpoint.root_hash
        )
    except ProofError:
        return "tree does not hash to the checkpoint's root"
    return None


def _reference_problem(
    doc: Document, reference: str, legacy: tuple[LedgerEntry, LedgerEntry | None] | None
) -> str | None:
    if doc.on_chain_reference is None:
        return "document has no ledger reference"
    if doc.on_chain_reference == reference:
        return None
    if legacy is None:
        return "ledger reference names neither the registered leaf nor a hash-chain entry"
    entry, predecessor = legacy
    if entry.reference != doc.on_chain_reference:
        return "ledger reference names neither the registered leaf nor a hash-chain entry"
    if entry.document_id != doc.id or entry.sha256_hash != doc.sha256_hash:
        return "hash-chain entry disagrees with the recorded hash"
    if not entry_is_consistent(entry, predecessor):
        return "hash chain broken at this entry"
    return None


def verified(
    doc: Document, status: DocumentStatus, verified_by: UUID | None, at: datetime
) -> Document:
    """``doc`` once a verification ending in ``status`` is recorded at ``at``.

    ``status`` is ``verified`` or ``mismatch``; an archived document stays
    ``archived`` (verification never un-archives).
    """
    if status not in (DocumentStatus.VERIFIED, DocumentStatus.MISMATCH):
        raise ValueError(f"a verification ends verified or mismatch, not {status}")
    if doc.is_disposed:
        raise DocumentDisposed(doc.id)  # disposed while its bytes were being read
    return attrs.evolve(
        doc,
        status=DocumentStatus.ARCHIVED if doc.is_archived else status,
        verified_by=verified_by,
        hash_verified_at=at,
        updated_at=at,
    )


def archived(doc: Document, archived_by: UUID | None, at: datetime) -> Document | None:
    """``doc`` once archived at ``at``; None when it already was (nothing to change).
    A tombstone is ``DocumentDisposed``."""
    if doc.is_disposed:
        raise DocumentDisposed(doc.id)
    if doc.is_archived:
        return None
    return attrs.evolve(
        doc,
        status=DocumentStatus.ARCHIVED,
        archived_by=archived_by,
        archived_at=at,
        updated_at=at,
    )


def disposed(doc: Document, at: datetime) -> Document:
    """``doc`` as its tombstone, once a disposition destroyed its bytes at ``at``."""
    if doc.is_disposed:
        raise DocumentDisposed(doc.id)
    return attrs.evolve(
        doc,
        status=DocumentStatus.DISPOSED,
        archived_at=doc.archived_at or at,
        updated_at=at,
    )
