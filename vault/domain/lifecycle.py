"""What happens to a stored document: what a verification concludes, what archiving does.

*Verification* compares three things: the hash of the bytes a download
would serve now, the hash the row records, and the ledger entry the row
cites (with its link to the entry before it). Any difference, or bytes
that could not be read at all, is a mismatch; ``conclude`` says which.
Recording the verdict never un-archives: an archived document keeps its
status and gains only who verified it and when.

*Archiving* is a soft delete and idempotent: archiving an archived
document changes nothing (``archived`` answers None), so nothing new is
announced.

The stores apply these inside their transactions; the actors gather what
they need (bytes, rows, ledger entries) and never decide themselves.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from vault.domain.ledger import entry_is_consistent
from vault.domain.models import Document, DocumentStatus, LedgerEntry


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


def conclude(
    doc: Document,
    calculated_hash: str | None,
    entry: LedgerEntry | None,
    predecessor: LedgerEntry | None,
) -> Verdict:
    """The verdict on ``doc`` from the bytes' hash and the ledger entry it cites.

    ``entry`` is the entry named by ``doc.on_chain_reference`` (None when
    the document has none, or the ledger holds no such entry) and
    ``predecessor`` the entry before it (None for the first).
    """
    if calculated_hash is None:
        return Verdict(False, None, "stored object missing or unreadable")
    if calculated_hash != doc.sha256_hash:
        return Verdict(False, calculated_hash, "content hash differs from the recorded hash")
    ledger_problem = _ledger_problem(doc, entry, predecessor)
    if ledger_problem is not None:
        return Verdict(False, calculated_hash, ledger_problem)
    return Verdict(True, calculated_hash, None)


def _ledger_problem(
    doc: Document, entry: LedgerEntry | None, predecessor: LedgerEntry | None
) -> str | None:
    if doc.on_chain_reference is None:
        return "document has no ledger reference"
    if entry is None:
        return "ledger entry missing"
    if entry.document_id != doc.id or entry.sha256_hash != doc.sha256_hash:
        return "ledger entry disagrees with the recorded hash"
    if not entry_is_consistent(entry, predecessor):
        return "ledger chain broken at this entry"
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
    return attrs.evolve(
        doc,
        status=DocumentStatus.ARCHIVED if doc.is_archived else status,
        verified_by=verified_by,
        hash_verified_at=at,
        updated_at=at,
    )


def archived(doc: Document, archived_by: UUID | None, at: datetime) -> Document | None:
    """``doc`` once archived at ``at``; None when it already was (nothing to change)."""
    if doc.is_archived:
        return None
    return attrs.evolve(
        doc,
        status=DocumentStatus.ARCHIVED,
        archived_by=archived_by,
        archived_at=at,
        updated_at=at,
    )
