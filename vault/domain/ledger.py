"""The append-only ledger's arithmetic: each entry commits to the one before.

An entry's hash covers its position, its predecessor's hash, the document
and the document's content hash, so rewriting any stored hash (in the row
or in the ledger) breaks either the comparison or the chain. The metadata
store appends entries inside the upload's transaction; the verifier checks
them with ``entry_is_consistent``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID

from vault.domain.models import LedgerEntry, iso_event

GENESIS_HASH = "0" * 64
REFERENCE_PREFIX = "0x"


def compute_entry_hash(
    seq: int, prev_hash: str, document_id: UUID, sha256_hash: str, registered_at: datetime
) -> str:
    material = "\n".join(
        ("vault-ledger-v1", str(seq), prev_hash, str(document_id), sha256_hash,
         iso_event(registered_at))
    )
    return hashlib.sha256(material.encode()).hexdigest()


def next_entry(
    previous: LedgerEntry | None, document_id: UUID, sha256_hash: str, registered_at: datetime
) -> LedgerEntry:
    seq = 1 if previous is None else previous.seq + 1
    prev_hash = GENESIS_HASH if previous is None else previous.entry_hash
    return LedgerEntry(
        seq=seq,
        entry_hash=compute_entry_hash(seq, prev_hash, document_id, sha256_hash, registered_at),
        prev_hash=prev_hash,
        document_id=document_id,
        sha256_hash=sha256_hash,
        registered_at=registered_at,
    )


def entry_hash_from_reference(reference: str) -> str | None:
    if not reference.startswith(REFERENCE_PREFIX):
        return None
    value = reference[len(REFERENCE_PREFIX):]
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        return None
    return value


def entry_is_consistent(entry: LedgerEntry, predecessor: LedgerEntry | None) -> bool:
    """True when the entry's own hash and its link to the predecessor both hold."""
    expected_prev = GENESIS_HASH if predecessor is None else predecessor.entry_hash
    if entry.prev_hash != expected_prev:
        return False
    if predecessor is not None and predecessor.seq != entry.seq - 1:
        return False
    recomputed = compute_entry_hash(
        entry.seq, entry.prev_hash, entry.document_id, entry.sha256_hash, entry.registered_at
    )
    return recomputed == entry.entry_hash
