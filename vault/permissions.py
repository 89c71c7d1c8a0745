"""Who may do what: identity providers and authorizers behind small Protocols.

Identity answers "who is asking" (an ``Actor`` or ``Unauthenticated``);
the authorizer answers "may they do this to that entity" (nothing, or
``Forbidden``; ``DependencyUnavailable`` when it cannot tell, never an
allow). Local header identity and the role matrix live here; JWT and the
permission service plug in behind the same Protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from uuid import UUID

import structlog

from vault.errors import Forbidden, Unauthenticated
from vault.models import Action, Actor, Role

log = structlog.get_logger("vault.permissions")

ROLE_MATRIX: Mapping[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ISSUER: frozenset(Action),
    Role.INVESTOR: frozenset({Action.DOWNLOAD}),
    Role.AUDITOR: frozenset({Action.DOWNLOAD, Action.VERIFY}),
    Role.COMPLIANCE_OFFICER: frozenset({Action.DOWNLOAD, Action.VERIFY, Action.ARCHIVE}),
}


class IdentityProvider(Protocol):
    def identify(self, headers: Mapping[str, str], actor_field: str | None) -> Actor:
        """The requesting actor; ``actor_field`` is the route's seed field, if sent."""


class Authorizer(Protocol):
    source: str

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        """Return if allowed; raise ``Forbidden`` if not."""


def parse_actor_id(raw: str | None, *, what: str) -> UUID:
    if raw is None or raw.strip() == "":
        raise Unauthenticated(f"No actor identity: send {what}")
    try:
        return UUID(raw.strip())
    except ValueError:
        raise Unauthenticated("The actor id is not a UUID") from None


def parse_role(raw: str | None) -> Role:
    if raw is None or raw.strip() == "":
        raise Unauthenticated("No role for this actor")
    try:
        return Role(raw.strip().lower())
    except ValueError:
        raise Unauthenticated(f"Unknown role {raw.strip()!r}") from None


class HeaderIdentity:
    """Local and test identity: ``X-Actor-Id`` / ``X-Actor-Role`` or ``EPR_MOCK_ROLES``."""

    def __init__(self, mock_roles: Mapping[UUID, Role]) -> None:
        self.mock_roles = mock_roles

    def identify(self, headers: Mapping[str, str], actor_field: str | None) -> Actor:
        raw_id = headers.get("X-Actor-Id") or actor_field
        actor_id = parse_actor_id(raw_id, what="an X-Actor-Id header")
        raw_role = headers.get("X-Actor-Role")
        if raw_role is None or raw_role.strip() == "":
            mapped = self.mock_roles.get(actor_id)
            if mapped is None:
                raise Unauthenticated(
                    "No role for this actor: send X-Actor-Role or list it in EPR_MOCK_ROLES"
                )
            return Actor.user(actor_id, mapped)
        return Actor.user(actor_id, parse_role(raw_role))


class MatrixAuthorizer:
    """``EPR_MOCK_MODE=true``: the role decides, by the contract's matrix."""

    source = "role_matrix"

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        allowed = actor.role is not None and action in ROLE_MATRIX[actor.role]
        log.info(
            "access_decided",
            actor_id=None if actor.id is None else str(actor.id),
            role=None if actor.role is None else actor.role.value,
            action=action.value,
            entity_id=str(entity_id),
            allowed=allowed,
            source=self.source,
        )
        if not allowed:
            role = actor.role.value if actor.role else "none"
            raise Forbidden(f"Role {role} may not perform {action.value}")


def check_actor_field(actor: Actor, field_name: str, named: UUID | None) -> None:
    """A seed actor field, when present, must name the requesting actor."""
    if named is not None and named != actor.id:
        raise Forbidden(f"{field_name} does not name the requesting actor")
