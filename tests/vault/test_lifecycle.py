"""What a verification concludes and what recording it or archiving does, with no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import attrs
import pytest

from vault.domain.ledger import next_entry
from vault.domain.lifecycle import archived, conclude, verified
from vault.domain.models import (
    Document,
    DocumentStatus,
    DocumentType,
    EntityType,
    LedgerEntry,
)

AT = datetime(2025, 10, 23, 12, 0, tzinfo=UTC)
HASH = "a" * 64


def a_document(**changes: object) -> Document:
    doc = Document(
        id=uuid4(), entity_type=EntityType.ISSUER, entity_id=uuid4(), token_id=None,
        document_type=DocumentType.KYC, filename="kyc.pdf", mime_type="application/pdf",
        size_bytes=10, storage_bucket="local", storage_key="documents/x",
        storage_version_id=None, sha256_hash=HASH, status=DocumentStatus.UPLOADED,
        uploaded_by=uuid4(), verified_by=None, archived_by=None, archived_at=None,
        hash_verified_at=None, on_chain_reference=None, metadata=None,
        created_at=AT, updated_at=AT,
    )  # fmt: skip
    return attrs.evolve(doc, **changes)


def registered(doc: Document) -> tuple[Document, LedgerEntry, LedgerEntry]:
    """``doc`` as the second entry of a chain: the document, its entry, the entry before."""
    first = next_entry(None, uuid4(), "b" * 64, AT)
    entry = next_entry(first, doc.id, doc.sha256_hash, AT)
    return attrs.evolve(doc, on_chain_reference=entry.reference), entry, first


class TestConclude:
    def test_matching_bytes_row_and_ledger_are_intact(self) -> None:
        """Same hash everywhere and an unbroken link: verified, no reason given."""
        doc, entry, before = registered(a_document())
        verdict = conclude(doc, HASH, entry, before)
        assert (verdict.intact, verdict.status, verdict.reason) == (
            True, DocumentStatus.VERIFIED, None,
        )  # fmt: skip
        assert verdict.calculated_hash == HASH

    def test_unreadable_bytes_are_a_mismatch_without_a_hash(self) -> None:
        """Nothing could be read: mismatch, and no calculated hash to report."""
        doc, entry, before = registered(a_document())
        verdict = conclude(doc, None, entry, before)
        assert verdict.status is DocumentStatus.MISMATCH
        assert verdict.calculated_hash is None
        assert verdict.reason == "stored object missing or unreadable"

    def test_changed_bytes_are_a_mismatch_with_their_hash(self) -> None:
        """Bytes that hash differently from the row: mismatch carrying the new hash."""
        doc, entry, before = registered(a_document())
        verdict = conclude(doc, "c" * 64, entry, before)
        assert (verdict.intact, verdict.calculated_hash) == (False, "c" * 64)
        assert verdict.reason == "content hash differs from the recorded hash"

    @pytest.mark.parametrize(
        ("case", "reason"),
        [
            ("no reference", "document has no ledger reference"),
            ("entry missing", "ledger entry missing"),
            ("entry for another hash", "ledger entry disagrees with the recorded hash"),
            ("broken link", "ledger chain broken at this entry"),
        ],
    )
    def test_ledger_problems_are_mismatches(self, case: str, reason: str) -> None:
        """Intact bytes still fail when the ledger does not back the row."""
        doc, entry, before = registered(a_document())
        match case:
            case "no reference":
                doc = attrs.evolve(doc, on_chain_reference=None)
            case "entry missing":
                entry = None  # type: ignore[assignment]
            case "entry for another hash":
                entry = attrs.evolve(entry, sha256_hash="d" * 64)
            case "broken link":
                before = attrs.evolve(before, entry_hash="e" * 64)
        verdict = conclude(doc, HASH, entry, before)
        assert (verdict.status, verdict.reason) == (DocumentStatus.MISMATCH, reason)


class TestVerified:
    def test_records_outcome_who_and_when(self) -> None:
        """A verification sets the status, the verifier and both timestamps."""
        doc, by, later = a_document(), uuid4(), AT + timedelta(hours=1)
        after = verified(doc, DocumentStatus.MISMATCH, by, later)
        assert after.status is DocumentStatus.MISMATCH
        assert (after.verified_by, after.hash_verified_at, after.updated_at) == (by, later, later)

    def test_never_un_archives(self) -> None:
        """An archived document stays archived, and still records who verified it."""
        doc = a_document(status=DocumentStatus.ARCHIVED, archived_at=AT)
        by = uuid4()
        after = verified(doc, DocumentStatus.VERIFIED, by, AT)
        assert after.status is DocumentStatus.ARCHIVED
        assert after.verified_by == by

    @pytest.mark.parametrize("status", [DocumentStatus.UPLOADED, DocumentStatus.ARCHIVED])
    def test_only_verified_or_mismatch_end_a_verification(self, status: DocumentStatus) -> None:
        """Any other outcome is a bug and refused."""
        with pytest.raises(ValueError, match="verified or mismatch"):
            verified(a_document(), status, uuid4(), AT)


class TestArchived:
    def test_archiving_sets_status_who_and_when(self) -> None:
        """A live document becomes archived by someone (or by no one: the system) at a time."""
        by = uuid4()
        after = archived(a_document(status=DocumentStatus.VERIFIED), by, AT)
        assert after is not None
        assert (after.status, after.archived_by, after.archived_at, after.updated_at) == (
            DocumentStatus.ARCHIVED, by, AT, AT,
        )  # fmt: skip
        system = archived(a_document(), None, AT)
        assert system is not None and system.archived_by is None

    def test_archiving_twice_changes_nothing(self) -> None:
        """An archived document has nothing to change: the answer is None."""
        assert archived(a_document(status=DocumentStatus.ARCHIVED), uuid4(), AT) is None
