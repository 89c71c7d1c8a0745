"""Bearer tokens: which actor a JWT names, once every check has passed.

The algorithm follows from the key (RSA → RS256, EC P-256 → ES256,
Ed25519 → EdDSA) and is the only one accepted: never ``none``, never HMAC,
so a token cannot pick its own way of being checked. ``exp`` and ``sub`` are
required; ``iss`` and ``aud`` are checked when configured. Actor id = ``sub``
(a UUID), role = ``role`` (a known role).

Errors: a token that fails any check is ``InvalidToken``, whose detail names
the check and never repeats the token. A key that cannot be used is a
``ConfigError`` naming ``JWT_PUBLIC_KEY``, so it stops start-up.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vault.domain.errors import ConfigError, InvalidToken
from vault.domain.models import Actor, Role

MIN_RSA_KEY_BITS = 2048
JWT_LEEWAY_SECONDS = 30.0
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""

_ROLES = frozenset(role.value for role in Role)

VerificationKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class TokenVerifier:
    """Checks bearer tokens against one public key and names their actor."""

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

    def actor_of(self, token: str) -> Actor:
        """The token's actor; ``InvalidToken`` naming the first check it fails."""
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
                    "verify_sub": False,  # checked by actor_of, as a UUID
                },
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(_failed_check(exc)) from None
        return claims


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


def load_verification_key(pem: str) -> tuple[VerificationKey, str]:
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
