"""Dispositions for the HTTP layer: propose, approve, execute, and the certificate.

Each step is the store's transaction in a worker thread; execution also
destroys the objects' versions from that thread, inside its transaction
(``SqlDispositions.execute_disposition`` says why), then the publishers and
the ledger are nudged for the tombstones' events and ``disposed`` leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import structlog

from actors.deps import Backends
from vault.domain.disposition import (
    Disposition,
    DispositionStatus,
    EligibleDocument,
    Proposal,
)
from vault.domain.models import Actor
from vault.ports import PageCursor

log = structlog.get_logger("vault.dispositions")


class Dispositions:
    def __init__(self, backends: Backends, *, committed: Callable[[], None]) -> None:
        self.backends = backends
        self.committed = committed
        self.clock = backends.clock

    async def propose(
        self, proposal: Proposal, actor: Actor, correlation_id: str | None
    ) -> Disposition:
        store, at = self.backends.store, self.clock()
        proposed = await self.backends.in_db(
            lambda: store.propose_disposition(
                proposal, actor=actor, correlation_id=correlation_id, at=at
            )
        )
        self.committed()
        log.info("disposition_proposed", disposition_id=str(proposed.disposition_id),
                 documents=len(proposed.items))
        return proposed

    async def approve(
        self, disposition_id: UUID, actor: Actor, correlation_id: str | None
    ) -> Disposition:
        store, at = self.backends.store, self.clock()
        approved = await self.backends.in_db(
            lambda: store.approve_disposition(
                disposition_id, actor=actor, correlation_id=correlation_id, at=at
            )
        )
        self.committed()
        log.info("disposition_approved", disposition_id=str(disposition_id))
        return approved

    async def execute(
        self, disposition_id: UUID, actor: Actor, correlation_id: str | None
    ) -> Disposition:
        store, blobs, at = self.backends.store, self.backends.blobs, self.clock()
        try:
            executed = await self.backends.in_db(
                lambda: store.execute_disposition(
                    disposition_id, blobs, actor=actor, correlation_id=correlation_id, at=at
                )
            )
        finally:
            # A refusal after the plan committed still changed the disposition's status.
            self.committed()
        log.info("disposition_executed", disposition_id=str(disposition_id),
                 documents=len(executed.items),
                 versions=sum(len(i.storage_versions or ()) for i in executed.items))
        return executed

    async def get(self, disposition_id: UUID) -> Disposition:
        return await self.backends.in_db(self.backends.store.get_disposition, disposition_id)

    async def listed(
        self, *, status: DispositionStatus | None, limit: int, after: PageCursor | None
    ) -> list[Disposition]:
        store = self.backends.store
        return await self.backends.in_db(
            lambda: store.list_dispositions(status=status, limit=limit, after=after)
        )

    async def eligible(
        self, *, limit: int, after: tuple[datetime, UUID] | None
    ) -> list[EligibleDocument]:
        store, now = self.backends.store, self.clock()
        return await self.backends.in_db(
            lambda: store.eligible_for_disposition(now, limit=limit, after=after)
        )
