"""May this actor do that to this entity? The two authorizers, and what they run.

``Authorizer.authorize`` returns when allowed and raises ``Forbidden`` (403)
when not; ``DependencyUnavailable`` (503) when it cannot tell, never an
allow. ``EPR_MOCK_MODE=true`` picks ``MatrixAuthorizer`` (the domain's role
matrix, answered on the event loop); ``false`` picks ``ServiceAuthorizer``,
which asks the permissions service from worker threads, at most
``Sizing.permission_lookups`` at a time (``actors.system``).

Every decision is logged as ``access_decided`` with ``source``.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

import attrs
import structlog
import trio

from vault.adapters.permissions_service import (
    CachedPermissions,
    DecisionCache,
    DecisionKey,
    EprClient,
)
from vault.config import Settings
from vault.domain.errors import DependencyUnavailable, Forbidden
from vault.domain.models import Action, Actor
from vault.domain.permissions import role_allows, role_refusal

log = structlog.get_logger("vault.permissions")


class Authorizer(Protocol):
    source: str

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        """Return if allowed; raise ``Forbidden`` if not."""

    async def authorize_listing(self, actor: Actor, entity_id: UUID) -> None:
        """Return if ``actor`` may see the entity's documents listed; ``Forbidden`` if not."""


def log_decision(
    actor: Actor, action: Action, entity_id: UUID, *, allowed: bool, source: str, **extra: object
) -> None:
    """One ``access_decided`` line per decision: who, what, on which entity, and who said so."""
    log.info(
        "access_decided",
        actor_id=None if actor.id is None else str(actor.id),
        role=None if actor.role is None else actor.role.value,
        action=action.value,
        entity_id=str(entity_id),
        allowed=allowed,
        source=source,
        **extra,
    )


class MatrixAuthorizer:
    """``EPR_MOCK_MODE=true``: the role decides, by the contract's matrix."""

    source = "role_matrix"

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        allowed = role_allows(actor, action)
        log_decision(actor, action, entity_id, allowed=allowed, source=self.source)
        if not allowed:
            raise role_refusal(actor, action)

    async def authorize_listing(self, actor: Actor, entity_id: UUID) -> None:
        """Listing is open to every role: nothing to decide, nothing logged."""


@attrs.define
class _Lookup:
    """One call in flight, shared by every request that asks the same question meanwhile."""

    done: trio.Event = attrs.field(factory=trio.Event)
    allowed: bool | None = None
    failure: str | None = None


class ServiceAuthorizer:
    """Ask the permission service, through its cache, without blocking the event loop.

    Concurrency: a cache hit answers on the event loop; a miss runs the
    blocking client in a worker thread, at most ``limiter``'s tokens at a
    time. Identical questions asked while one is in flight wait for its
    answer instead of calling again.

    Errors: no answer within ``deadline`` seconds (the thread is abandoned;
    the client's own timeout ends it), or any ``DependencyUnavailable`` from
    the client, is 503 for every request that waited on that call; never an
    allow. Failures are not cached.

    Every decision is logged as ``access_decided`` with ``source``.
    """

    source = "permissions_service"

    def __init__(
        self,
        permissions: CachedPermissions,
        *,
        deadline: float,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.permissions = permissions
        self.deadline = deadline
        self.limiter = limiter
        self._in_flight: dict[DecisionKey, _Lookup] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, lookups: int) -> ServiceAuthorizer:
        """The service's client, its cache, and ``lookups`` calls in flight at most."""
        if settings.epr_service_url is None:  # Settings refuses this already; for type checkers
            raise ValueError("EPR_SERVICE_URL is required when EPR_MOCK_MODE=false")
        client = EprClient(
            settings.epr_service_url, settings.epr_service_timeout, max_connections=lookups
        )
        cache = DecisionCache(settings.epr_cache_ttl_seconds)
        return cls(
            CachedPermissions(client, cache),
            deadline=settings.epr_service_timeout,
            limiter=trio.CapacityLimiter(lookups),
        )

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        if actor.id is None:
            self._log(actor, action, entity_id, allowed=False, cached=False)
            raise Forbidden("Only a user's request can be authorized by the permissions service")
        key: DecisionKey = (actor.id, action, entity_id)
        allowed = self.permissions.cached(key)
        cached = allowed is not None
        if allowed is None:
            try:
                allowed = await self._shared_lookup(key)
            except DependencyUnavailable as exc:
                log.warning(
                    "access_undecided",
                    actor_id=str(actor.id),
                    action=action.value,
                    entity_id=str(entity_id),
                    source=self.source,
                    reason=exc.detail,
                )
                raise
        self._log(actor, action, entity_id, allowed=allowed, cached=cached)
        if not allowed:
            raise Forbidden(f"The permissions service denies {action.value} on this entity")

    async def authorize_listing(self, actor: Actor, entity_id: UUID) -> None:
        """Who may not download an entity's documents does not see them listed."""
        await self.authorize(actor, Action.DOWNLOAD, entity_id)

    def close(self) -> None:
        self.permissions.close()

    async def _shared_lookup(self, key: DecisionKey) -> bool:
        while (pending := self._in_flight.get(key)) is not None:
            await pending.done.wait()
            if pending.allowed is not None:
                return pending.allowed
            if pending.failure is not None:
                raise DependencyUnavailable(pending.failure)
            # The caller was cancelled before an answer came: ask again.
            hit = self.permissions.cached(key)
            if hit is not None:
                return hit
        lookup = _Lookup()
        self._in_flight[key] = lookup
        try:
            lookup.allowed = await self._lookup(key)
            return lookup.allowed
        except DependencyUnavailable as exc:
            lookup.failure = exc.detail
            raise
        finally:
            del self._in_flight[key]
            lookup.done.set()

    async def _lookup(self, key: DecisionKey) -> bool:
        bound = structlog.contextvars.get_contextvars().get("request_id")
        request_id = bound if isinstance(bound, str) else None
        with trio.move_on_after(self.deadline):
            allowed: bool = await trio.to_thread.run_sync(
                lambda: self.permissions.is_authorized(key, request_id=request_id),
                limiter=self.limiter,
                abandon_on_cancel=True,
            )
            return allowed
        raise DependencyUnavailable(
            f"permissions service did not answer within {self.deadline:g} s"
        )

    def _log(
        self, actor: Actor, action: Action, entity_id: UUID, *, allowed: bool, cached: bool
    ) -> None:
        log_decision(actor, action, entity_id, allowed=allowed, source=self.source, cached=cached)
