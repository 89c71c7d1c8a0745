"""Disposition: destroying records whose time is over, with a second person's approval.

What blocks a document's disposition is its retention while
``retain_until`` is ahead, and every active legal hold covering it
(``blocked_by``, as ``GET .../retention`` shows it). A disposition is
proposed by an admin for a set of documents with a reason, approved by a
second admin or compliance officer (never the proposer), and executed:
retention and holds are checked again then, every stored version of each
object is deleted, the metadata row stays as a tombstone, and the ledger
gets a ``disposed`` leaf. Its certificate keeps what was destroyed (hashes,
storage versions, policy versions), who proposed and approved it, when the
holds were checked and when it ran.

This module holds the rules and the certificate's shape; the SQL store
(``vault.adapters.stores.dispositions``) runs them in its transactions.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from vault.domain.errors import Forbidden, InvalidRequest, VaultError
from vault.domain.locks import StoredVersion
from vault.domain.models import Actor, Document
from vault.domain.retention import DocumentRetention
from vault.domain.validation import required_text, uuid_list

MAX_DOCUMENTS = 1000
MAX_REASON_CHARS = 2000


class DispositionStatus(enum.StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    EXECUTING = "executing"
    """Its plan (every stored version of each object) is recorded and the bytes are being
    destroyed; executing it again finishes the job."""
    EXECUTED = "executed"


class DispositionNotFound(VaultError, LookupError):
    status = 404
    error_code = "DISPOSITION_NOT_FOUND"
    title = "Disposition Not Found"


class DispositionOutOfTurn(VaultError):
    """Approving what is not proposed, executing what is not approved."""

    status = 409
    error_code = "DISPOSITION_OUT_OF_TURN"
    title = "Disposition Out Of Turn"


class NotDisposable(VaultError):
    """Some documents are still under retention or hold; nothing is disposed."""

    status = 409
    error_code = "DOCUMENT_NOT_DISPOSABLE"
    title = "Document Not Disposable"

    def __init__(self, blocked: dict[UUID, list[str]]) -> None:
        self.blocked = blocked
        first, reasons = next(iter(blocked.items()))
        more = f" and {len(blocked) - 1} more" if len(blocked) > 1 else ""
        super().__init__(f"Document {first} is blocked by {', '.join(reasons)}{more}")

    def extra(self) -> dict[str, Any]:
        return {"blocked": {str(d): reasons for d, reasons in self.blocked.items()}}


def blocked_by(
    retention: DocumentRetention | None, holds: Sequence[UUID], now: datetime
) -> list[str]:
    """What keeps a document from disposition: ``retention`` while it runs, ``hold:<id>``
    for each active hold. Empty: disposable."""
    blocked = []
    if retention is not None and retention.retain_until > now:
        blocked.append("retention")
    blocked.extend(f"hold:{hold}" for hold in holds)
    return blocked


@attrs.frozen
class Proposal:
    document_ids: tuple[UUID, ...]
    reason: str


def parse_proposal(body: object) -> Proposal:
    """``POST /api/v1/dispositions`` ``{"document_ids", "reason"}``: 1 to 1000 distinct ids."""
    if not isinstance(body, dict):
        raise InvalidRequest.field("body", "body", "must be a JSON object")
    for key in body:
        if key not in ("document_ids", "reason"):
            raise InvalidRequest.field("body", str(key), "is not a field of this request")
    ids = uuid_list(body.get("document_ids"), "document_ids", MAX_DOCUMENTS)
    if not ids:
        raise InvalidRequest.field("body", "document_ids", "must be a non-empty array of UUIDs")
    return Proposal(ids, required_text(body.get("reason"), "reason", MAX_REASON_CHARS))


def check_approval(status: DispositionStatus, proposed_by: UUID | None, approver: Actor) -> None:
    """A proposed disposition, approved by someone other than its proposer."""
    if status is not DispositionStatus.PROPOSED:
        raise DispositionOutOfTurn(f"a disposition {status.value} cannot be approved")
    if approver.id is not None and approver.id == proposed_by:
        raise Forbidden("the proposer of a disposition may not approve it")


def check_execution(status: DispositionStatus) -> None:
    """Approved, or executing (an execution cut short is finished by the next)."""
    if status not in (DispositionStatus.APPROVED, DispositionStatus.EXECUTING):
        raise DispositionOutOfTurn(
            f"a disposition {status.value} cannot be executed: it must be approved first"
            if status is DispositionStatus.PROPOSED
            else "the disposition was executed already"
        )


def blocked_at_execution(
    doc: Document, retention: DocumentRetention | None, holds: Sequence[UUID],
    pending: Sequence[UUID], now: datetime,
) -> list[str]:
    """``blocked_by`` plus what only a disposition meets: ``disposed`` (a tombstone
    already) and ``disposition:<id>`` for each other disposition not yet executed that
    names the document."""
    blocked = ["disposed"] if doc.is_disposed else []
    blocked.extend(blocked_by(retention, holds, now))
    blocked.extend(f"disposition:{other}" for other in pending)
    return blocked


@attrs.frozen
class DisposedVersion:
    """One stored version a disposition planned to destroy (and destroyed, once executed)."""

    version_id: str | None
    delete_marker: bool

    @classmethod
    def of(cls, version: StoredVersion) -> DisposedVersion:
        return cls(version.version_id, version.delete_marker)


@attrs.frozen
class DispositionItem:
    """One document of a disposition, as the certificate keeps it."""

    document_id: UUID
    entity_id: UUID
    entity_type: str
    document_type: str
    filename: str
    sha256_hash: str
    size_bytes: int
    storage_bucket: str
    storage_key: str
    policy_version: int | None
    """The retention policy version that kept it (None: uploaded under no policy)."""
    retention_mode: str | None
    retain_until: datetime | None
    storage_versions: tuple[DisposedVersion, ...] | None
    """Every stored version of its object, recorded before any is deleted (None: not
    executed yet)."""
    leaf_hash: str | None
    """Hex hash of its ``disposed`` leaf (None: not executed yet)."""
    ledger_index: int | None
    """Where that leaf sits in the log (None until the ledger integrates it)."""


@attrs.frozen
class Disposition:
    """A disposition and, once executed, its certificate of destruction."""

    disposition_id: UUID
    status: DispositionStatus
    reason: str
    proposed_by: UUID | None
    proposed_role: str
    proposed_at: datetime
    approved_by: UUID | None
    approved_role: str | None
    approved_at: datetime | None
    holds_checked_at: datetime | None
    """When retention and holds were last checked, in the transaction that executed it."""
    executed_by: UUID | None
    executed_role: str | None
    executed_at: datetime | None
    items: tuple[DispositionItem, ...]


@attrs.frozen
class EligibleDocument:
    """``GET /api/v1/dispositions/eligible``: a document past its ``retain_until``, no hold."""

    document_id: UUID
    entity_id: UUID
    entity_type: str
    document_type: str
    sha256_hash: str
    status: str
    policy_version: int
    retention_mode: str
    retain_until: datetime
    on_expiry: str
