"""Who is asking: the request's identity, from headers or a bearer token.

``IdentityProvider.identify`` answers with an ``Actor`` or raises
``Unauthenticated`` (401). Which provider runs is decided once, from the
configuration: bearer tokens when ``JWT_PUBLIC_KEY`` is set (the actor
headers are then ignored), else the headers of local and test use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from uuid import UUID

from vault.config import Settings
from vault.domain.errors import Unauthenticated
from vault.domain.models import Actor, Role
from vault.domain.permissions import parse_actor_id, parse_role
from vault.domain.tokens import JWT_LEEWAY_SECONDS, TokenVerifier


class IdentityProvider(Protocol):
    def identify(self, headers: Mapping[str, str], actor_field: str | None) -> Actor:
        """The requesting actor; ``actor_field`` is the route's seed field, if sent."""


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


class JwtIdentity:
    """``JWT_PUBLIC_KEY`` set: ``Authorization: Bearer <JWT>`` names the actor.

    The token's checks are ``vault.domain.tokens``. Headers ``X-Actor-Id``/
    ``X-Actor-Role`` and the route's actor field are not read. No bearer
    credentials is ``Unauthenticated``; a token that fails a check is
    ``InvalidToken``.
    """

    def __init__(
        self,
        public_key_pem: str,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = JWT_LEEWAY_SECONDS,
    ) -> None:
        self.tokens = TokenVerifier(public_key_pem, issuer, audience, leeway)

    def identify(self, headers: Mapping[str, str], actor_field: str | None) -> Actor:
        return self.tokens.actor_of(bearer_token(headers.get("Authorization")))


def bearer_token(header: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; ``Unauthenticated`` without one."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or token == "":
        raise Unauthenticated("No bearer token: send Authorization: Bearer <JWT>")
    return token


def identity_for(settings: Settings) -> IdentityProvider:
    """Bearer tokens when ``JWT_PUBLIC_KEY`` is set (headers ignored), else the headers.

    A key that cannot verify anything raises ``ConfigError`` naming ``JWT_PUBLIC_KEY``.
    """
    if settings.jwt_public_key is not None:
        return JwtIdentity(settings.jwt_public_key, settings.jwt_issuer, settings.jwt_audience)
    return HeaderIdentity(settings.epr_mock_roles)
