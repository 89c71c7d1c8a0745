"""JWT_PUBLIC_KEY set: bearer tokens name the actor, headers are ignored, the matrix decides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from quart.typing import TestClientProtocol as Client

from actors.access import MatrixAuthorizer
from actors.system import Sizing, Vault, authorizer_for
from tests.http.helpers import (
    ACTIONS,
    act,
    archive_path,
    assert_decided,
    assert_matrix_answer,
    decisions,
    download_path,
    list_path,
    post_upload,
    problem,
    uploaded,
    verify,
)
from tests.support import test_settings
from vault.config import Settings
from vault.domain.models import Role
from vault.wiring import url_signer
from vault_http.app import VaultApp, create_app
from vault_http.identity import JwtIdentity, identity_for

ISSUER = "https://login.example"
AUDIENCE = "document-vault"


@pytest.fixture(scope="module")
def signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def settings(tmp_path: Path, signing_key: ed25519.Ed25519PrivateKey) -> Settings:
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return test_settings(
        tmp_path / "data", jwt_public_key=pem, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )


@pytest.fixture
def app(vault: Vault, settings: Settings) -> VaultApp:
    """The app wired from the settings, as ``vault serve`` wires it."""
    return create_app(
        vault,
        identity=identity_for(settings),
        authorizer=authorizer_for(settings, Sizing()),
        signer=url_signer(settings),
    )


@pytest.fixture
def token_for(signing_key: ed25519.Ed25519PrivateKey) -> Any:
    def sign(role: Role | str, actor_id: UUID | None = None, **claims: Any) -> dict[str, str]:
        now = int(time.time())
        payload = {
            "sub": str(actor_id or uuid4()),
            "role": role.value if isinstance(role, Role) else role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        token = jwt.encode(payload, signing_key, algorithm="EdDSA")
        return {"Authorization": f"Bearer {token}"}

    return sign


class TestWiring:
    def test_jwt_public_key_selects_token_identity(self, settings: Settings) -> None:
        """With JWT_PUBLIC_KEY set, ``vault serve`` identifies by token, issuer and audience set."""
        identity = identity_for(settings)
        assert isinstance(identity, JwtIdentity)
        assert (identity.tokens.issuer, identity.tokens.audience) == (ISSUER, AUDIENCE)
        assert isinstance(authorizer_for(settings, Sizing()), MatrixAuthorizer)


class TestRoleMatrixByToken:
    @pytest.mark.parametrize("action", ACTIONS)
    @pytest.mark.parametrize("role", list(Role))
    async def test_role_claim_may_or_may_not_act(
        self, client: Client, token_for: Any, role: Role, action: str
    ) -> None:
        """Each token role is allowed exactly the contract matrix's actions, else 403."""
        response = await act(client, action, token_for(role), token_for(Role.ADMIN))
        await assert_matrix_answer(response, role, action)

    async def test_actor_is_the_tokens_subject(self, client: Client, token_for: Any) -> None:
        """The stored ``uploaded_by`` is the token's ``sub``."""
        actor = uuid4()
        doc = await uploaded(client, headers=token_for(Role.ISSUER, actor))
        assert doc["uploaded_by"] == str(actor)


class TestHeaderIdentityIgnored:
    @pytest.mark.parametrize("action", ACTIONS)
    async def test_actor_headers_without_token_are_401(
        self, client: Client, token_for: Any, action: str
    ) -> None:
        """X-Actor-Id and X-Actor-Role alone identify no one when JWT is configured."""
        headers = {"X-Actor-Id": str(uuid4()), "X-Actor-Role": "admin"}
        response = await act(client, action, headers, token_for(Role.ADMIN))
        await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_role_header_does_not_raise_the_tokens_role(
        self, client: Client, token_for: Any
    ) -> None:
        """An investor's token with ``X-Actor-Role: admin`` is still an investor (403 upload)."""
        headers = {**token_for(Role.INVESTOR), "X-Actor-Role": "admin"}
        response = await post_upload(client, headers=headers)
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_id_header_does_not_replace_the_subject(
        self, client: Client, token_for: Any
    ) -> None:
        """X-Actor-Id beside a token is ignored: the document is the token subject's."""
        actor = uuid4()
        headers = {**token_for(Role.ISSUER, actor), "X-Actor-Id": str(uuid4())}
        doc = await uploaded(client, headers=headers)
        assert doc["uploaded_by"] == str(actor)


class TestSeedFieldsWithToken:
    async def test_uploaded_by_naming_the_subject_is_accepted(
        self, client: Client, token_for: Any
    ) -> None:
        """``uploaded_by`` equal to the token's ``sub`` is accepted."""
        actor = uuid4()
        doc = await uploaded(client, headers=token_for(Role.ISSUER, actor), uploaded_by=str(actor))
        assert doc["uploaded_by"] == str(actor)

    async def test_uploaded_by_naming_someone_else_is_403(
        self, client: Client, token_for: Any
    ) -> None:
        """``uploaded_by`` naming another actor than the token's ``sub`` answers 403."""
        response = await post_upload(
            client, headers=token_for(Role.ADMIN), uploaded_by=str(uuid4())
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_verifier_id_naming_someone_else_is_403(
        self, client: Client, token_for: Any
    ) -> None:
        """``verifier_id`` naming another actor than the token's ``sub`` answers 403."""
        doc = await uploaded(client, headers=token_for(Role.ADMIN))
        response = await verify(
            client, doc["id"], token_for(Role.AUDITOR), verifier_id=str(uuid4())
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")


class TestInvalidToken:
    @pytest.mark.parametrize(
        ("claims", "detail"),
        [
            ({"exp": int(time.time()) - 3600}, "token expired"),
            ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
            ({"aud": "another-service"}, "audience mismatch"),
            ({"iss": "https://elsewhere.example"}, "issuer mismatch"),
            ({"role": "superuser"}, "token role claim is not a known role"),
            ({"sub": "alice"}, "token sub claim is not a UUID"),
        ],
    )
    async def test_answer_is_401_invalid_token_naming_the_check(
        self, client: Client, token_for: Any, claims: dict[str, Any], detail: str
    ) -> None:
        """A refused token answers 401 ``Bearer error="invalid_token"`` naming the failed check."""
        extra = dict(claims)
        headers = token_for(extra.pop("role", Role.ADMIN), **extra)
        response = await client.get(list_path(uuid4()), headers=headers)
        body = await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert body["detail"] == detail

    async def test_body_never_echoes_the_token(self, client: Client, token_for: Any) -> None:
        """Neither the body nor the headers of the 401 carry the token or its parts."""
        headers = token_for(Role.ADMIN, exp=int(time.time()) - 3600)
        token = headers["Authorization"].removeprefix("Bearer ")
        response = await client.get(list_path(uuid4()), headers=headers)
        text = await response.get_data(as_text=True)
        await problem(response, 401, "UNAUTHENTICATED")
        shown = text + repr(dict(response.headers))
        assert all(part not in shown for part in token.split("."))

    async def test_signed_by_another_key_is_401(self, client: Client) -> None:
        """A token signed by a key other than JWT_PUBLIC_KEY's answers 401 signature invalid."""
        now = int(time.time())
        token = jwt.encode(
            {"sub": str(uuid4()), "role": "admin", "iss": ISSUER, "aud": AUDIENCE,
             "exp": now + 300},
            ed25519.Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
        )
        headers = {"Authorization": f"Bearer {token}"}
        response = await client.get(list_path(uuid4()), headers=headers)
        body = await problem(response, 401, "UNAUTHENTICATED")
        assert body["detail"] == "signature invalid"

    async def test_invalid_token_wins_over_malformed_request(
        self, client: Client, token_for: Any
    ) -> None:
        """An expired token on a request that is also malformed answers 401, not 422."""
        response = await client.get(
            download_path("not-a-uuid"), headers=token_for(Role.ADMIN, exp=0)
        )
        await problem(response, 401, "UNAUTHENTICATED")


class TestDecisionLog:
    async def test_matrix_decisions_are_logged(self, client: Client, token_for: Any) -> None:
        """Allow and deny are both logged with actor, action, entity, and the matrix as source."""
        investor = uuid4()
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity, headers=token_for(Role.ADMIN))
        with structlog.testing.capture_logs() as logs:
            await client.get(download_path(doc["id"]), headers=token_for(Role.INVESTOR, investor))
            await client.delete(archive_path(doc["id"]), headers=token_for(Role.INVESTOR, investor))
        decided = decisions(logs)
        assert [(d["action"], d["allowed"]) for d in decided] == [
            ("document:download", True), ("document:archive", False)
        ]
        assert_decided(
            decided, actor=investor, role="investor", entity=str(entity), source="role_matrix"
        )
