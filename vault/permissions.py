"""Who may do what: identity providers and authorizers behind small Protocols.

Identity answers "who is asking" (an ``Actor`` or ``Unauthenticated``);
the authorizer answers "may they do this to that entity" (nothing, or
``Forbidden``; ``DependencyUnavailable`` when it cannot tell, never an
allow). Header identity, bearer-token identity and the role matrix live
here; the permission service's client is ``vault.epr``, and its async
authorizer lives in the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from uuid import UUID

import jwt
import structlog
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vault.errors import ConfigError, Forbidden, InvalidToken, Unauthenticated
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


MIN_RSA_KEY_BITS = 2048
JWT_LEEWAY_SECONDS = 30.0
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""


class JwtIdentity:
    """``JWT_PUBLIC_KEY`` set: ``Authorization: Bearer <JWT>`` names the actor.

    The algorithm follows from the key (RSA → RS256, EC P-256 → ES256,
    Ed25519 → EdDSA) and is the only one accepted: never ``none``, never
    HMAC, so a token cannot pick its own way of being checked. ``exp`` and
    ``sub`` are required; ``iss`` and ``aud`` are checked when configured.
    Actor id = ``sub`` (a UUID), role = ``role`` (a known role). Headers
    ``X-Actor-Id``/``X-Actor-Role`` and the route's actor field are not read.

    Errors: no bearer credentials is ``Unauthenticated``; a token that fails
    any check is ``InvalidToken``, whose detail names the check and never
    repeats the token. A key that cannot be used stops start-up with a
    ``ConfigError`` naming ``JWT_PUBLIC_KEY``.
    """

    def __init__(
        self,
        public_key_pem: str,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = JWT_LEEWAY_SECONDS,
    ) -> None:
        self.key, self.algorithm = load_verification_key(public_key_pem)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    def identify(self, headers: Mapping[str, str], actor_field: str | None) -> Actor:
        token = bearer_token(headers.get("Authorization"))
        claims = self._verified_claims(token)
        sub = claims["sub"]
        try:
            actor_id = UUID(sub) if isinstance(sub, str) else None
        except ValueError:
            actor_id = None
        if actor_id is None:
            raise InvalidToken("token sub claim is not a UUID")
        raw_role = claims.get("role")
        if raw_role is None:
            raise InvalidToken("token has no role claim")
        if not isinstance(raw_role, str) or raw_role not in _ROLES:
            raise InvalidToken("token role claim is not a known role")
        return Actor.user(actor_id, Role(raw_role))

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                    "verify_sub": False,  # checked below, as a UUID
                },
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(_failed_check(exc)) from None
        return claims


_ROLES = frozenset(role.value for role in Role)


def bearer_token(header: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; ``Unauthenticated`` without one."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or token == "":
        raise Unauthenticated("No bearer token: send Authorization: Bearer <JWT>")
    return token


def _failed_check(exc: jwt.InvalidTokenError) -> str:
    """Which check a token failed, in words a client can act on."""
    match exc:
        case jwt.ExpiredSignatureError():
            return "token expired"
        case jwt.ImmatureSignatureError():
            return "token not yet valid"
        case jwt.InvalidAudienceError():
            return "audience mismatch"
        case jwt.InvalidIssuerError():
            return "issuer mismatch"
        case jwt.MissingRequiredClaimError(claim=claim):
            return f"token has no {claim} claim"
        case jwt.InvalidAlgorithmError():
            return "token algorithm not accepted"
        case jwt.InvalidSignatureError():
            return "signature invalid"
        case jwt.InvalidIssuedAtError():
            return "token iat claim is not a number"
        case jwt.DecodeError():
            return "token malformed"
        case _:
            return "token invalid"


def load_verification_key(
    pem: str,
) -> tuple[rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey, str]:
    """The public key in ``pem`` and the one algorithm it verifies.

    A PEM pasted into one line with literal ``\\n`` separators is accepted.
    Raises ``ConfigError`` naming ``JWT_PUBLIC_KEY`` for anything else.
    """
    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError("JWT_PUBLIC_KEY", "not a PEM public key") from None
    match key:
        case rsa.RSAPublicKey() if key.key_size < MIN_RSA_KEY_BITS:
            raise ConfigError(
                "JWT_PUBLIC_KEY",
                f"RSA key of {key.key_size} bits; at least {MIN_RSA_KEY_BITS} are required",
            )
        case rsa.RSAPublicKey():
            return key, "RS256"
        case ec.EllipticCurvePublicKey() if isinstance(key.curve, ec.SECP256R1):
            return key, "ES256"
        case ed25519.Ed25519PublicKey():
            return key, "EdDSA"
    raise ConfigError(
        "JWT_PUBLIC_KEY", "unsupported key type (expected RSA, EC P-256 or Ed25519)"
    )


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
        allowed = actor.role is not None and action in ROLE_MATRIX[actor.role]
        log_decision(actor, action, entity_id, allowed=allowed, source=self.source)
        if not allowed:
            role = actor.role.value if actor.role else "none"
            raise Forbidden(f"Role {role} may not perform {action.value}")


def check_actor_field(actor: Actor, field_name: str, named: UUID | None) -> None:
    """A seed actor field, when present, must name the requesting actor."""
    if named is not None and named != actor.id:
        raise Forbidden(f"{field_name} does not name the requesting actor")
