"""What a verification concludes and what recording it or archiving does, with no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.leaf import LeafKind
from vault.domain.ledger import next_entry
from vault.domain.lifecycle import LogEvidence, Verdict, archived, conclude, verified
from vault.domain.log import SignedCheckpoint, StoredLeaf, TileSet, grow, leaf_for, reference_of
from vault.domain.merkle import CompactRange, inclusion_proof, leaf_hash
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType
from vault.domain.note import Signer

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


SIGNER = Signer.from_key("vault.test/log", Ed25519PrivateKey.generate())
OTHER = Signer.from_key("vault.test/log", Ed25519PrivateKey.generate())


def registered(doc: Document, *, size: int = 5, index: int = 2) -> tuple[Document, LogEvidence]:
    """``doc`` registered at ``index`` of a signed tree of ``size`` leaves, and the evidence."""
    leaf = leaf_for(doc, LeafKind.REGISTERED, doc.created_at).encode()
    leaves = [b"other leaf %d" % i for i in range(size)]
    leaves[index] = leaf
    growth = grow(CompactRange(), {}, [leaf_hash(item) for item in leaves])
    root = growth.tree.root()
    note = signed_checkpoint(Checkpoint("vault.test/log", size, root), SIGNER)
    tiles = TileSet(growth.tiles)
    evidence = LogEvidence(
        leaf=StoredLeaf(leaf, leaf_hash(leaf).hex(), index),
        checkpoint=SignedCheckpoint(size, root, note, AT),
        proof=tuple(inclusion_proof(index, size, tiles.get_node)),
        tree_leaf_hash=tiles.get_node(0, index),
    )
    return attrs.evolve(doc, on_chain_reference=reference_of(leaf)), evidence


def _problem(doc: Document, evidence: LogEvidence) -> str | None:
    return conclude(doc, HASH, evidence, SIGNER.verifier()).reason


class TestConclude:
    def test_matching_bytes_row_and_log_are_intact(self) -> None:
        """Same hash everywhere and the leaf proved under a signed checkpoint: verified."""
        doc, evidence = registered(a_document())
        verdict = conclude(doc, HASH, evidence, SIGNER.verifier())
        assert (verdict.intact, verdict.status, verdict.reason) == (
            True, DocumentStatus.VERIFIED, None,
        )  # fmt: skip
        assert verdict.calculated_hash == HASH

    def test_unreadable_bytes_are_a_mismatch_without_a_hash(self) -> None:
        """Nothing could be read: mismatch, and no calculated hash to report."""
        doc, evidence = registered(a_document())
        verdict = conclude(doc, None, evidence, SIGNER.verifier())
        assert verdict.status is DocumentStatus.MISMATCH
        assert verdict.calculated_hash is None
        assert verdict.reason == "stored object missing or unreadable"

    def test_changed_bytes_are_a_mismatch_with_their_hash(self) -> None:
        """Bytes that hash differently from the row: mismatch carrying the new hash."""
        doc, evidence = registered(a_document())
        verdict = conclude(doc, "c" * 64, evidence, SIGNER.verifier())
        assert (verdict.intact, verdict.calculated_hash) == (False, "c" * 64)
        assert verdict.reason == "content hash differs from the recorded hash"

    def test_every_size_and_index_proves(self) -> None:
        for size in range(1, 40):
            for index in range(size):
                doc, evidence = registered(a_document(), size=size, index=index)
                assert _problem(doc, evidence) is None, (index, size)

    @pytest.mark.parametrize(
        ("case", "reason"),
        [
            ("no leaf", "registered leaf missing from the log"),
            ("malformed leaf", "registered leaf is malformed: leaf does not end in a newline"),
            ("leaf of another hash", "registered leaf disagrees with the recorded hash"),
            ("leaf store hash", "leaf store's hash disagrees with the leaf"),
            ("no reference", "document has no ledger reference"),
            ("another reference",
             "ledger reference names neither the registered leaf nor a hash-chain entry"),
            ("pending", "registered leaf is not in the tree under the latest checkpoint"),
            ("beyond checkpoint", "registered leaf is not in the tree under the latest checkpoint"),
            ("no checkpoint", "registered leaf is not in the tree under the latest checkpoint"),
            ("forged checkpoint", "latest checkpoint does not carry the log's signature"),
            ("stored root edited",
             "latest checkpoint's stored size or root disagrees with its signed note"),
            ("tiles missing", "tree is missing the tiles that prove the leaf"),
            ("tree leaf edited", "tree's hash of the leaf disagrees with the leaf"),
            ("proof edited", "tree does not hash to the checkpoint's root"),
        ],
    )  # fmt: skip
    def test_log_problems_are_mismatches(self, case: str, reason: str) -> None:
        """Intact bytes still fail when the log does not back the row."""
        doc, evidence = registered(a_document())
        leaf, checkpoint = evidence.leaf, evidence.checkpoint
        assert leaf is not None and checkpoint is not None and evidence.proof is not None
        match case:
            case "no leaf":
                evidence = attrs.evolve(evidence, leaf=None)
            case "malformed leaf":
                evidence = attrs.evolve(evidence, leaf=attrs.evolve(leaf, leaf=leaf.leaf[:-1]))
            case "leaf of another hash":
                doc = attrs.evolve(doc, sha256_hash="d" * 64)
                return _check(conclude(doc, "d" * 64, evidence, SIGNER.verifier()), reason)
            case "leaf store hash":
                evidence = attrs.evolve(evidence, leaf=attrs.evolve(leaf, leaf_hash="e" * 64))
            case "no reference":
                doc = attrs.evolve(doc, on_chain_reference=None)
            case "another reference":
                doc = attrs.evolve(doc, on_chain_reference="0x" + "f" * 64)
            case "pending":
                evidence = attrs.evolve(evidence, leaf=attrs.evolve(leaf, leaf_index=None))
            case "beyond checkpoint":
                evidence = attrs.evolve(evidence, leaf=attrs.evolve(leaf, leaf_index=5))
            case "no checkpoint":
                evidence = attrs.evolve(evidence, checkpoint=None)
            case "forged checkpoint":
                body = Checkpoint("vault.test/log", 5, checkpoint.root_hash)
                note = signed_checkpoint(body, OTHER)
                evidence = attrs.evolve(evidence, checkpoint=attrs.evolve(checkpoint, note=note))
            case "stored root edited":
                evidence = attrs.evolve(
                    evidence, checkpoint=attrs.evolve(checkpoint, root_hash=b"r" * 32)
                )
            case "tiles missing":
                evidence = attrs.evolve(evidence, proof=None)
            case "tree leaf edited":
                evidence = attrs.evolve(evidence, tree_leaf_hash=b"t" * 32)
            case "proof edited":
                evidence = attrs.evolve(evidence, proof=(b"p" * 32, *evidence.proof[1:]))
        _check(conclude(doc, HASH, evidence, SIGNER.verifier()), reason)

    def test_a_sound_hash_chain_entry_backs_a_legacy_reference(self) -> None:
        """A document registered before the log keeps its chain reference, checked as before."""
        doc, evidence = registered(a_document())
        first = next_entry(None, uuid4(), "b" * 64, AT)
        entry = next_entry(first, doc.id, doc.sha256_hash, AT)
        legacy_doc = attrs.evolve(doc, on_chain_reference=entry.reference)
        assert _problem(legacy_doc, attrs.evolve(evidence, legacy=(entry, first))) is None
        broken = (entry, attrs.evolve(first, entry_hash="e" * 64))
        assert _problem(legacy_doc, attrs.evolve(evidence, legacy=broken)) == (
            "hash chain broken at this entry"
        )
        other = (attrs.evolve(entry, sha256_hash="d" * 64), first)
        assert _problem(legacy_doc, attrs.evolve(evidence, legacy=other)) == (
            "hash-chain entry disagrees with the recorded hash"
        )


def _check(verdict: Verdict, reason: str) -> None:
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
