"""Records management for the HTTP layer: retention policies, a document's retention, holds.

Each change is one store transaction in a worker thread (with its audit
event), after which the audit publisher is nudged. A document's retention
is read from both sides: what the metadata store recorded, and what the
object store holds on the object itself (its lock mode, retain-until and
legal hold), so drift between the two shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import attrs
import structlog

from actors.deps import Backends
from vault.domain.disposition import blocked_by
from vault.domain.errors import BlobUnreadable, DependencyUnavailable
from vault.domain.holds import HoldStatus, ItemChange, LegalHold, NewHold
from vault.domain.locks import ObjectLock
from vault.domain.models import Actor, Document, DocumentType, utcnow
from vault.domain.retention import (
    DocumentRetention,
    PolicyRequest,
    RetentionMode,
    RetentionPolicy,
)
from vault.ports import PageCursor

log = structlog.get_logger("vault.records")


@attrs.frozen
class RetentionView:
    """``GET /api/v1/documents/{id}/retention``: the record, its holds and the object's lock."""

    document: Document
    retention: DocumentRetention | None
    holds: tuple[UUID, ...]
    storage: ObjectLock
    at: datetime

    @property
    def blocked_by(self) -> list[str]:
        return blocked_by(self.retention, self.holds, self.at)


class ObjectLockMissing(DependencyUnavailable):
    """The object store cannot lock objects while a compliance policy asks it to."""


def object_lock_problem(enabled: bool, policies: Sequence[RetentionPolicy]) -> str | None:
    """Why the storage cannot enforce the records' retention, or None.

    A store without Object Lock is a problem only once a policy exists (a
    compliance one stops start-up; any one fails readiness), since nothing
    asks for a lock before.
    """
    if enabled or not policies:
        return None
    modes = sorted({p.mode.value for p in policies})
    return (
        "the object store has no Object Lock, but retention policies in "
        f"{' and '.join(modes)} mode exist: retention and legal holds are not enforced by it"
    )


def require_object_lock(backends: Backends) -> None:
    """Stop start-up (``ObjectLockMissing``) when a compliance policy cannot be enforced.
    Blocks (start-up, before the actors)."""
    if backends.blobs.object_lock_enabled():
        return
    policies = backends.store.retention_policies()
    problem = object_lock_problem(False, policies)
    if problem is not None and any(p.mode is RetentionMode.COMPLIANCE for p in policies):
        raise ObjectLockMissing(problem)


class Records:
    def __init__(self, backends: Backends, *, committed: Callable[[], None]) -> None:
        self.backends = backends
        self.committed = committed

    async def put_policy(
        self, document_type: DocumentType, request: PolicyRequest, actor: Actor,
        correlation_id: str | None,
    ) -> tuple[RetentionPolicy, int]:
        store = self.backends.store
        at = utcnow()
        policy, moved = await self.backends.in_db(
            lambda: store.put_retention_policy(
                document_type, request, actor=actor, correlation_id=correlation_id, at=at
            )
        )
        self.committed()
        log.info("retention_policy_set", document_type=document_type.value,
                 version=policy.version, period=policy.period.text(), mode=policy.mode.value,
                 documents_lengthened=moved)
        return policy, moved

    async def policies(self) -> list[RetentionPolicy]:
        return await self.backends.in_db(self.backends.store.retention_policies)

    async def retention_of(self, document_id: UUID) -> RetentionView:
        store, blobs = self.backends.store, self.backends.blobs
        doc = await self.backends.in_db(store.get_document, document_id)
        retention = await self.backends.in_db(store.document_retention, document_id)
        holds = await self.backends.in_db(store.holds_of, doc.id, doc.entity_id)
        try:
            lock = await self.backends.in_blobs(
                blobs.lock_state, doc.storage_key, doc.storage_version_id
            )
        except BlobUnreadable:
            # The object is gone (the sweep reports that as a mismatch): it holds no lock.
            lock = ObjectLock.unlocked(doc.storage_version_id)
        return RetentionView(doc, retention, tuple(holds), lock, self.backends.clock())

    async def create_hold(
        self, new: NewHold, actor: Actor, correlation_id: str | None
    ) -> LegalHold:
        store = self.backends.store
        at = utcnow()
        hold = await self.backends.in_db(
            lambda: store.create_hold(new, actor=actor, correlation_id=correlation_id, at=at)
        )
        self.committed()
        log.info("legal_hold_created", hold_id=str(hold.hold_id), name=hold.name,
                 documents=len(new.document_ids), entities=len(new.entity_ids))
        return hold

    async def change_items(
        self, hold_id: UUID, change: ItemChange, *, add: bool, actor: Actor,
        correlation_id: str | None,
    ) -> LegalHold:
        store = self.backends.store
        at = utcnow()
        hold = await self.backends.in_db(
            lambda: store.change_hold_items(
                hold_id, change, add=add, actor=actor, correlation_id=correlation_id, at=at
            )
        )
        self.committed()
        log.info("legal_hold_items_added" if add else "legal_hold_items_removed",
                 hold_id=str(hold_id), documents=len(change.document_ids),
                 entities=len(change.entity_ids))
        return hold

    async def release(
        self, hold_id: UUID, reason: str, actor: Actor, correlation_id: str | None
    ) -> LegalHold:
        store = self.backends.store
        at = utcnow()
        hold = await self.backends.in_db(
            lambda: store.release_hold(
                hold_id, reason=reason, actor=actor, correlation_id=correlation_id, at=at
            )
        )
        self.committed()
        log.info("legal_hold_released", hold_id=str(hold_id))
        return hold

    async def hold(self, hold_id: UUID) -> LegalHold:
        return await self.backends.in_db(self.backends.store.get_hold, hold_id)

    async def holds(
        self, *, status: HoldStatus | None, limit: int, after: PageCursor | None
    ) -> list[LegalHold]:
        store = self.backends.store
        return await self.backends.in_db(
            lambda: store.list_holds(status=status, limit=limit, after=after)
        )
