"""Who may do what: actor ids, roles, the contract's role matrix, the seed's actor fields.

Rules only. Where a request's identity comes from (headers, a bearer token)
is the HTTP layer's business; who answers for an action (this matrix, or the
permissions service) is chosen when the system is assembled.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from vault.domain.errors import Forbidden, Unauthenticated
from vault.domain.models import Action, Actor, Role

ROLE_MATRIX: Mapping[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ISSUER: frozenset(Action),
    Role.INVESTOR: frozenset({Action.DOWNLOAD}),
    Role.AUDITOR: frozenset({Action.DOWNLOAD, Action.VERIFY}),
    Role.COMPLIANCE_OFFICER: frozenset({Action.DOWNLOAD, Action.VERIFY, Action.ARCHIVE}),
}
"""``EPR_MOCK_MODE=true``: what each role may do (listing is open to every role)."""


OVERSIGHT_ROLES: frozenset[Role] = frozenset({Role.ADMIN, Role.AUDITOR, Role.COMPLIANCE_OFFICER})
"""Who reads what spans every entity: integrity coverage, incidents."""
COMPLIANCE_ROLES: frozenset[Role] = frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER})
"""Who acts on integrity: resolving incidents, freezing entities (in mock mode)."""


def require_role(actor: Actor, roles: frozenset[Role], what: str) -> None:
    """403 unless the actor's role is one of ``roles``; ``what`` finishes "may not …"."""
    if actor.role not in roles:
        role = actor.role.value if actor.role else "none"
        raise Forbidden(f"Role {role} may not {what}")


def role_allows(actor: Actor, action: Action) -> bool:
    """The matrix's answer: a user whose role includes ``action``; never the system."""
    return actor.role is not None and action in ROLE_MATRIX[actor.role]


def role_refusal(actor: Actor, action: Action) -> Forbidden:
    """What the matrix says to an actor whose role does not include ``action``."""
    role = actor.role.value if actor.role else "none"
    return Forbidden(f"Role {role} may not perform {action.value}")


def check_actor_field(actor: Actor, field_name: str, named: UUID | None) -> None:
    """A seed actor field, when present, must name the requesting actor."""
    if named is not None and named != actor.id:
        raise Forbidden(f"{field_name} does not name the requesting actor")


def parse_actor_id(raw: str | None, *, what: str) -> UUID:
    """An actor id as sent; ``Unauthenticated`` naming ``what`` to send when there is none."""
    if raw is None or raw.strip() == "":
        raise Unauthenticated(f"No actor identity: send {what}")
    try:
        return UUID(raw.strip())
    except ValueError:
        raise Unauthenticated("The actor id is not a UUID") from None


def parse_role(raw: str | None) -> Role:
    """A role as sent (case and surrounding blanks ignored); ``Unauthenticated`` otherwise."""
    if raw is None or raw.strip() == "":
        raise Unauthenticated("No role for this actor")
    try:
        return Role(raw.strip().lower())
    except ValueError:
        raise Unauthenticated(f"Unknown role {raw.strip()!r}") from None
