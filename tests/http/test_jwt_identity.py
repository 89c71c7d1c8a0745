"""Bearer-token identity: tokens signed with keys generated here, checked with their public half."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import uuid4

import attrs
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vault.config import Settings
from vault.domain.errors import ConfigError, InvalidToken, Unauthenticated
from vault.domain.models import Actor, Role
from vault_http.identity import JwtIdentity

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

ISSUER = "https://issuer.example"
AUDIENCE = "document-vault"
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


def public_pem(key: PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.frozen
class KeyPair:
    """A signing key generated for the test, its public PEM and the algorithm it implies."""

    kind: str
    private: PrivateKey
    algorithm: str

    @property
    def pem(self) -> str:
        return public_pem(self.private)

    def sign(self, claims: Mapping[str, Any], **headers: Any) -> str:
        return jwt.encode(dict(claims), self.private, algorithm=self.algorithm,
                          headers=headers or None)

    def identity(self, **kwargs: Any) -> JwtIdentity:
        return JwtIdentity(self.pem, **kwargs)


def _generate(kind: str) -> KeyPair:
    match kind:
        case "rsa":
            return KeyPair(kind, rsa.generate_private_key(65537, 2048), "RS256")
        case "ec":
            return KeyPair(kind, ec.generate_private_key(ec.SECP256R1()), "ES256")
        case "ed25519":
            return KeyPair(kind, ed25519.Ed25519PrivateKey.generate(), "EdDSA")
    raise AssertionError(kind)


KINDS = ("rsa", "ec", "ed25519")


@pytest.fixture(scope="module")
def key_pairs() -> dict[str, KeyPair]:
    """One key of each kind, and a second of each kind to sign with the wrong key."""
    pairs = {kind: _generate(kind) for kind in KINDS}
    pairs.update({f"other-{kind}": _generate(kind) for kind in KINDS})
    return pairs


@pytest.fixture(params=KINDS)
def keys(request: pytest.FixtureRequest, key_pairs: dict[str, KeyPair]) -> KeyPair:
    pair: KeyPair = key_pairs[request.param]
    return pair


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": str(uuid4()), "role": "auditor", "iat": now, "exp": now + 300}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(identity: JwtIdentity, token: str) -> InvalidToken:
    """Identify with ``token``; it must be refused as an invalid token that is not echoed."""
    with pytest.raises(InvalidToken) as caught:
        identity.identify(bearer(token), None)
    error = caught.value
    assert error.status == 401 and error.error_code == "UNAUTHENTICATED"
    assert error.headers() == {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE}
    assert token not in error.detail
    for part in token.split("."):
        if len(part) > 8:
            assert part not in error.detail
    return error


class TestAcceptedTokens:
    def test_valid_token_names_the_actor(self, keys: KeyPair) -> None:
        """A valid token's ``sub`` is the actor id and its ``role`` claim the role."""
        actor_id = uuid4()
        token = keys.sign(claims(sub=str(actor_id), role="compliance_officer"))
        actor = keys.identity().identify(bearer(token), None)
        assert actor == Actor.user(actor_id, Role.COMPLIANCE_OFFICER)

    def test_matching_issuer_and_audience_are_accepted(self, keys: KeyPair) -> None:
        """With JWT_ISSUER and JWT_AUDIENCE set, a token carrying both is accepted."""
        token = keys.sign(claims(iss=ISSUER, aud=AUDIENCE))
        identity = keys.identity(issuer=ISSUER, audience=AUDIENCE)
        assert identity.identify(bearer(token), None).role is Role.AUDITOR

    def test_audience_is_not_checked_when_unconfigured(self, keys: KeyPair) -> None:
        """Without JWT_AUDIENCE, a token's ``aud`` is not a reason to refuse it."""
        token = keys.sign(claims(aud="some-other-service"))
        assert keys.identity().identify(bearer(token), None).role is Role.AUDITOR

    def test_issuer_is_not_checked_when_unconfigured(self, keys: KeyPair) -> None:
        """Without JWT_ISSUER, any ``iss`` is accepted."""
        token = keys.sign(claims(iss="https://elsewhere.example"))
        assert keys.identity().identify(bearer(token), None).role is Role.AUDITOR

    def test_expiry_within_the_leeway_is_accepted(self, keys: KeyPair) -> None:
        """A token that expired a few seconds ago passes within the clock-skew leeway."""
        token = keys.sign(claims(exp=int(time.time()) - 5))
        assert keys.identity(leeway=30).identify(bearer(token), None).role is Role.AUDITOR

    def test_header_identity_is_ignored(self, keys: KeyPair) -> None:
        """X-Actor-Id and X-Actor-Role beside a token change nothing: the token decides."""
        actor_id = uuid4()
        token = keys.sign(claims(sub=str(actor_id), role="investor"))
        headers = {**bearer(token), "X-Actor-Id": str(uuid4()), "X-Actor-Role": "admin"}
        assert keys.identity().identify(headers, str(uuid4())) == Actor.user(
            actor_id, Role.INVESTOR
        )

    def test_scheme_is_case_insensitive(self, keys: KeyPair) -> None:
        """``Authorization: bearer <token>`` is the same as ``Bearer``."""
        token = keys.sign(claims())
        actor = keys.identity().identify({"Authorization": f"bearer {token}"}, None)
        assert actor.role is Role.AUDITOR


def _alg_none(keys: KeyPair) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(role="admin")).encode())
    return f"{header}.{payload}."


def _hs256_with_public_pem(keys: KeyPair) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(role="admin")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(keys.pem.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def _tampered(keys: KeyPair) -> str:
    header, payload, signature = keys.sign(claims(role="investor")).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "admin"
    return f"{header}.{b64url(json.dumps(body).encode())}.{signature}"


def _wrong_key(keys: KeyPair, pairs: dict[str, KeyPair]) -> str:
    return pairs[f"other-{keys.kind}"].sign(claims())


def _other_algorithm(keys: KeyPair, pairs: dict[str, KeyPair]) -> str:
    other = "ec" if keys.kind != "ec" else "rsa"
    return pairs[other].sign(claims())


TokenCase = Callable[[KeyPair, dict[str, KeyPair]], str]

REFUSALS: dict[str, tuple[TokenCase, str]] = {
    "expired": (lambda k, _: k.sign(claims(exp=int(time.time()) - 3600)), "token expired"),
    "not yet valid": (
        lambda k, _: k.sign(claims(nbf=int(time.time()) + 3600)), "token not yet valid"
    ),
    "issued in the future": (
        lambda k, _: k.sign(claims(iat=int(time.time()) + 3600)), "token not yet valid"
    ),
    "wrong key": (_wrong_key, "signature invalid"),
    "tampered payload": (lambda k, _: _tampered(k), "signature invalid"),
    "alg none": (lambda k, _: _alg_none(k), "token algorithm not accepted"),
    "HS256 keyed with the public PEM": (
        lambda k, _: _hs256_with_public_pem(k), "token algorithm not accepted"
    ),
    "another key type's algorithm": (_other_algorithm, "token algorithm not accepted"),
    "no exp": (lambda k, _: k.sign(claims(exp=None)), "token has no exp claim"),
    "no sub": (lambda k, _: k.sign(claims(sub=None)), "token has no sub claim"),
    "sub not a UUID": (lambda k, _: k.sign(claims(sub="alice")), "token sub claim is not a UUID"),
    "sub not a string": (lambda k, _: k.sign(claims(sub=42)), "token sub claim is not a UUID"),
    "no role": (lambda k, _: k.sign(claims(role=None)), "token has no role claim"),
    "unknown role": (
        lambda k, _: k.sign(claims(role="superuser")), "token role claim is not a known role"
    ),
    "role not a string": (
        lambda k, _: k.sign(claims(role=["admin"])), "token role claim is not a known role"
    ),
    "not a JWT": (lambda k, _: "not-a-token", "token malformed"),
    "garbage segments": (lambda k, _: "eyJhbGciOi.e30.c2ln", "token malformed"),
}


class TestRefusedTokens:
    @pytest.mark.parametrize("case", list(REFUSALS))
    def test_refused_with_the_failed_check_named(
        self, keys: KeyPair, key_pairs: dict[str, KeyPair], case: str
    ) -> None:
        """Each bad token is a 401 invalid_token whose detail names the failed check."""
        make, detail = REFUSALS[case]
        error = refused(keys.identity(), make(keys, key_pairs))
        assert error.detail == detail

    def test_wrong_audience(self, keys: KeyPair) -> None:
        """With JWT_AUDIENCE set, a token for another audience is an audience mismatch."""
        token = keys.sign(claims(aud="another-service"))
        assert refused(keys.identity(audience=AUDIENCE), token).detail == "audience mismatch"

    def test_missing_audience_when_configured(self, keys: KeyPair) -> None:
        """With JWT_AUDIENCE set, a token without ``aud`` is refused, naming the claim."""
        token = keys.sign(claims())
        assert refused(keys.identity(audience=AUDIENCE), token).detail == "token has no aud claim"

    def test_wrong_issuer(self, keys: KeyPair) -> None:
        """With JWT_ISSUER set, a token from another issuer is an issuer mismatch."""
        token = keys.sign(claims(iss="https://elsewhere.example"))
        assert refused(keys.identity(issuer=ISSUER), token).detail == "issuer mismatch"

    def test_signature_is_checked_before_expiry(
        self, keys: KeyPair, key_pairs: dict[str, KeyPair]
    ) -> None:
        """An expired token signed by another key is reported as a bad signature."""
        token = key_pairs[f"other-{keys.kind}"].sign(claims(exp=int(time.time()) - 3600))
        assert refused(keys.identity(), token).detail == "signature invalid"


class TestMissingCredentials:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer   "},
            {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
            {"X-Actor-Id": "5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14", "X-Actor-Role": "admin"},
        ],
        ids=["none", "empty", "scheme only", "blank token", "basic", "actor headers only"],
    )
    def test_no_bearer_token_is_401_with_plain_challenge(
        self, keys: KeyPair, headers: dict[str, str]
    ) -> None:
        """Without a bearer token the answer is 401 ``WWW-Authenticate: Bearer`` (no error code)."""
        with pytest.raises(Unauthenticated) as caught:
            keys.identity().identify(headers, "5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14")
        assert not isinstance(caught.value, InvalidToken)
        assert caught.value.headers() == {"WWW-Authenticate": "Bearer"}
        assert "Authorization: Bearer" in caught.value.detail


class TestPublicKey:
    def test_algorithm_follows_the_key(self, keys: KeyPair) -> None:
        """RSA verifies RS256, EC P-256 ES256 and Ed25519 EdDSA, one algorithm per key."""
        assert keys.identity().tokens.algorithm == keys.algorithm

    def test_pem_with_escaped_newlines_is_accepted(self, keys: KeyPair) -> None:
        """A PEM pasted on one line with literal ``\\n`` works like the multi-line form."""
        one_line = keys.pem.strip().replace("\n", "\\n")
        token = keys.sign(claims())
        assert JwtIdentity(one_line).identify(bearer(token), None).role is Role.AUDITOR

    @pytest.mark.parametrize(
        "make_pem",
        [
            lambda: "not a key",
            lambda: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            lambda: public_pem(rsa.generate_private_key(65537, 1024)),
            lambda: public_pem(ec.generate_private_key(ec.SECP384R1())),
        ],
        ids=["text", "truncated", "private key", "rsa-1024", "ec-p384"],
    )
    def test_unusable_key_is_a_one_line_config_error(self, make_pem: Callable[[], str]) -> None:
        """A key that is not a usable PEM public key stops start-up naming JWT_PUBLIC_KEY."""
        pem = make_pem()
        with pytest.raises(ConfigError) as caught:
            JwtIdentity(pem)
        assert caught.value.variable == "JWT_PUBLIC_KEY"
        assert str(caught.value).startswith("JWT_PUBLIC_KEY: ")
        assert "\n" not in str(caught.value)
        assert "PRIVATE" not in str(caught.value)

    def test_settings_refuse_an_unusable_key(self) -> None:
        """``Settings.from_env`` (and so ``vault check-config``) refuses a bad JWT_PUBLIC_KEY."""
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ENVIRONMENT": "prod", "JWT_PUBLIC_KEY": "not a key"})
        assert caught.value.variable == "JWT_PUBLIC_KEY"

    def test_settings_accept_a_usable_key(self, keys: KeyPair) -> None:
        """A usable key lets ENVIRONMENT=prod start, with header identity off."""
        ledger_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        settings = Settings.from_env(
            {"ENVIRONMENT": "prod", "JWT_PUBLIC_KEY": keys.pem, "LEDGER_SIGNING_KEY": ledger_key}
        )
        assert settings.jwt_public_key is not None
        assert settings.header_identity_allowed is False

