"""The store's side of records management: retention policies, documents' retention,
legal holds, dispositions. ``MetadataStore`` (``vault.ports``) includes it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from vault.domain.disposition import (
    Disposition,
    DispositionStatus,
    EligibleDocument,
    Proposal,
)
from vault.domain.holds import HoldStatus, ItemChange, LegalHold, NewHold
from vault.domain.locks import LockTask, ObjectLock
from vault.domain.models import Actor, DocumentType
from vault.domain.retention import DocumentRetention, PolicyRequest, RetentionPolicy
from vault.ports.pages import PageCursor

if TYPE_CHECKING:
    from vault.ports import BlobStore


class RecordsStore(Protocol):
    def put_retention_policy(
        self, document_type: DocumentType, request: PolicyRequest, *, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> tuple[RetentionPolicy, int]:
        """A new version of the type's policy (``RetentionCannotShorten`` if it would keep
        any document less, or less strictly), with every existing document of the type it
        keeps longer moved later; the version and how many moved."""

    def retention_policies(self) -> list[RetentionPolicy]:
        """Every version of every type's policy, by type then version."""

    def document_retention(self, document_id: UUID) -> DocumentRetention | None:
        """The document's retention as recorded (None: uploaded under no policy)."""

    def create_hold(
        self, new: NewHold, *, actor: Actor, correlation_id: str | None, at: datetime
    ) -> LegalHold:
        """A new active hold with its items (``DocumentNotFound`` for an unknown document)."""

    def change_hold_items(
        self, hold_id: UUID, change: ItemChange, *, add: bool, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> LegalHold:
        """Add or remove items (``HoldNotFound``, ``HoldReleased``, ``DocumentNotFound``)."""

    def release_hold(
        self, hold_id: UUID, *, reason: str, actor: Actor, correlation_id: str | None,
        at: datetime,
    ) -> LegalHold:
        """End the hold for good (``HoldNotFound``; ``HoldReleased`` if it already was)."""

    def get_hold(self, hold_id: UUID) -> LegalHold: ...

    def list_holds(
        self, *, status: HoldStatus | None, limit: int, after: PageCursor | None
    ) -> list[LegalHold]:
        """Newest first, ``limit`` at most, after the ``(created_at, hold_id)`` cursor."""

    def holds_of(self, document_id: UUID, entity_id: UUID) -> list[UUID]:
        """The active holds covering the document, by its id or its entity's."""

    def storage_lock_due(self, limit: int) -> list[LockTask]:
        """Documents whose object's lock must be brought to the records, oldest queued first,
        each with the retention and legal hold it must now carry."""

    def storage_lock_applied(self, task: LockTask, applied: ObjectLock, at: datetime) -> bool:
        """Record what the object holds now; True when its queue row went (False: queued
        again meanwhile, so it is applied once more)."""

    def storage_lock_backlog(self) -> tuple[int, datetime | None]:
        """Documents queued, and the oldest queued time."""

    def propose_disposition(
        self, proposal: Proposal, *, actor: Actor, correlation_id: str | None, at: datetime
    ) -> Disposition:
        """A proposed disposition (``DocumentNotFound``; ``NotDisposable`` for documents that
        retention, a hold or another pending disposition keeps)."""

    def approve_disposition(
        self, disposition_id: UUID, *, actor: Actor, correlation_id: str | None, at: datetime
    ) -> Disposition:
        """Approved (``DispositionNotFound``, ``DispositionOutOfTurn``, ``Forbidden`` for
        the proposer)."""

    def execute_disposition(
        self, disposition_id: UUID, blobs: BlobStore, *, actor: Actor,
        correlation_id: str | None, at: datetime,
    ) -> Disposition:
        """Check again, destroy every stored version, leave tombstones with their leaves and
        events (``DispositionOutOfTurn``, ``NotDisposable``, ``StorageLocked``: then no
        document is marked disposed). Blocks on ``blobs`` inside its transaction."""

    def get_disposition(self, disposition_id: UUID) -> Disposition: ...

    def list_dispositions(
        self, *, status: DispositionStatus | None, limit: int, after: PageCursor | None
    ) -> list[Disposition]:
        """Newest proposed first, after the ``(proposed_at, disposition_id)`` cursor."""

    def eligible_for_disposition(
        self, now: datetime, *, limit: int, after: tuple[datetime, UUID] | None
    ) -> list[EligibleDocument]:
        """Documents past ``retain_until`` that no active hold covers, soonest expired first."""
