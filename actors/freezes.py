"""Entity freezes for the HTTP layer: the state, the check every guarded route makes, changes.

The check is one indexed read in a worker thread; a change is one
transaction with its audit event and its notification, after which the
publishers are nudged (as after any commit).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import structlog

from actors.deps import Backends
from vault.domain.freezes import EntityFrozen, FreezeState
from vault.domain.models import Actor, utcnow

log = structlog.get_logger("vault.integrity")


class Freezes:
    def __init__(self, backends: Backends, *, committed: Callable[[], None]) -> None:
        self.backends = backends
        self.committed = committed

    async def state(self, entity_id: UUID) -> FreezeState:
        return await self.backends.in_db(self.backends.store.entity_freeze, entity_id)

    async def check(self, entity_id: UUID) -> None:
        """``EntityFrozen`` (423) while the entity is frozen."""
        found = await self.state(entity_id)
        if found.frozen:
            raise EntityFrozen(found)

    async def change(
        self, entity_id: UUID, *, frozen: bool, actor: Actor, reason: str,
        correlation_id: str | None,
    ) -> FreezeState:
        store = self.backends.store
        at = utcnow()
        state, changed = await self.backends.in_db(
            lambda: store.set_freeze(
                entity_id, frozen=frozen, actor=actor, reason=reason,
                correlation_id=correlation_id, at=at,
            )
        )
        if changed:
            self.committed()
            log.info("entity_frozen" if frozen else "entity_unfrozen",
                     entity_id=str(entity_id), by=str(actor.id), reason=reason)
        return state
