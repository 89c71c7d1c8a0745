"""Who is asking, and whether their role lets them: headers, seed fields, EPR_MOCK_ROLES."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import pytest
from quart.typing import TestClientProtocol as Client

from tests.http.helpers import (
    ACTIONS,
    act,
    archive_path,
    assert_matrix_answer,
    audit_rows,
    download_path,
    list_path,
    problem,
    uploaded,
    verify,
)
from tests.support import actor_headers, test_settings
from vault.config import Settings
from vault.domain.models import Role


class TestRoleMatrix:
    @pytest.mark.parametrize("action", ACTIONS)
    @pytest.mark.parametrize("role", list(Role))
    async def test_role_may_or_may_not_act(self, client: Client, role: Role, action: str) -> None:
        """Each role is allowed exactly the actions the contract's matrix gives it, else 403."""
        await assert_matrix_answer(await act(client, action, actor_headers(role)), role, action)

    async def test_role_header_is_case_insensitive(self, client: Client) -> None:
        """``X-Actor-Role: Admin`` is the admin role."""
        response = await act(client, "archive", {"X-Actor-Id": str(uuid4()),
                                                   "X-Actor-Role": "Admin"})
        assert response.status_code == 200


class TestUnauthenticated:
    @pytest.mark.parametrize("action", ACTIONS)
    async def test_no_actor_is_401_with_bearer_challenge(self, client: Client, action: str) -> None:
        """No X-Actor-Id and no actor field answers 401 with ``WWW-Authenticate: Bearer``."""
        response = await act(client, action, {"X-Actor-Role": "admin"})
        await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"] == "Bearer"

    @pytest.mark.parametrize("action", ACTIONS)
    async def test_actor_id_that_is_not_a_uuid_is_401(self, client: Client, action: str) -> None:
        """An X-Actor-Id that is not a UUID answers 401."""
        response = await act(client, action, {"X-Actor-Id": "alice", "X-Actor-Role": "admin"})
        await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"] == "Bearer"

    @pytest.mark.parametrize("action", ACTIONS)
    async def test_unknown_role_is_401(self, client: Client, action: str) -> None:
        """An X-Actor-Role outside the five roles answers 401."""
        response = await act(client, action, actor_headers("superuser"))
        await problem(response, 401, "UNAUTHENTICATED")

    async def test_no_role_anywhere_is_401(self, client: Client) -> None:
        """An actor with no X-Actor-Role and no EPR_MOCK_ROLES entry answers 401."""
        response = await act(client, "list", {"X-Actor-Id": str(uuid4())})
        await problem(response, 401, "UNAUTHENTICATED")

    async def test_unauthenticated_wins_over_malformed_request(self, client: Client) -> None:
        """No identity on a request that is also malformed answers 401, not 422."""
        response = await client.get(download_path("not-a-uuid"))
        await problem(response, 401, "UNAUTHENTICATED")


MAPPED_AUDITOR = UUID("5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14")


class TestMockRoles:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", epr_mock_roles={MAPPED_AUDITOR: Role.AUDITOR})

    async def test_role_comes_from_epr_mock_roles(self, client: Client) -> None:
        """Without X-Actor-Role, EPR_MOCK_ROLES gives the actor its role (auditor may verify)."""
        response = await act(client, "verify", {"X-Actor-Id": str(MAPPED_AUDITOR)})
        assert response.status_code == 200
        assert (await response.get_json())["verified_by"] == str(MAPPED_AUDITOR)

    async def test_mapped_role_is_enforced(self, client: Client) -> None:
        """The mapped role limits the actor like a header role would (auditor may not upload)."""
        response = await act(client, "upload", {"X-Actor-Id": str(MAPPED_AUDITOR)})
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_header_role_wins_over_the_mapping(self, client: Client) -> None:
        """An explicit X-Actor-Role is used even when EPR_MOCK_ROLES lists the actor."""
        response = await act(client, "upload", actor_headers(Role.ISSUER, MAPPED_AUDITOR))
        assert response.status_code == 201

    async def test_unmapped_actor_without_role_is_401(self, client: Client) -> None:
        """An actor absent from EPR_MOCK_ROLES and sending no role answers 401."""
        response = await act(client, "verify", {"X-Actor-Id": str(uuid4())})
        await problem(response, 401, "UNAUTHENTICATED")


ISSUER_ROLE = {"X-Actor-Role": "issuer"}


class TestSeedActorFields:
    async def test_uploaded_by_is_the_actor(self, client: Client) -> None:
        """Without X-Actor-Id, ``uploaded_by`` identifies the uploader."""
        actor = uuid4()
        doc = await uploaded(client, headers=ISSUER_ROLE, uploaded_by=str(actor))
        assert doc["uploaded_by"] == str(actor)

    async def test_uploaded_by_after_the_file_is_the_actor(self, client: Client) -> None:
        """``uploaded_by`` sent after the file part still identifies the uploader."""
        actor = uuid4()
        doc = await uploaded(
            client, headers=ISSUER_ROLE, uploaded_by=str(actor), file_first=True
        )
        assert doc["uploaded_by"] == str(actor)

    async def test_verifier_id_is_the_actor(self, client: Client) -> None:
        """Without X-Actor-Id, ``verifier_id`` identifies the verifier."""
        doc = await uploaded(client)
        actor = uuid4()
        response = await verify(client, doc["id"], ISSUER_ROLE, verifier_id=str(actor))
        assert response.status_code == 200
        assert (await response.get_json())["verified_by"] == str(actor)

    async def test_requestor_id_is_the_actor(self, client: Client, settings: Settings) -> None:
        """Without X-Actor-Id, ``requestor_id`` identifies who asked for the URL."""
        doc = await uploaded(client)
        actor = uuid4()
        response = await client.get(
            download_path(doc["id"]), headers=ISSUER_ROLE,
            query_string={"requestor_id": str(actor)},
        )
        assert response.status_code == 200
        [issued] = [r for r in await audit_rows(settings)
                    if r["action"] == "document.download_url_issued"]
        assert issued["actor_id"] == str(actor)

    async def test_archived_by_is_the_actor(self, client: Client) -> None:
        """Without X-Actor-Id, ``archived_by`` identifies the archiver."""
        entity, actor = uuid4(), uuid4()
        doc = await uploaded(client, entity_id=entity)
        response = await client.delete(
            archive_path(doc["id"]), headers=ISSUER_ROLE, query_string={"archived_by": str(actor)}
        )
        assert response.status_code == 200
        listing = await client.get(
            list_path(entity), headers=actor_headers(), query_string={"include_archived": "true"}
        )
        assert (await listing.get_json())["documents"][0]["archived_by"] == str(actor)

    async def test_malformed_seed_field_without_header_is_401(self, client: Client) -> None:
        """A seed actor field that is not a UUID, with no X-Actor-Id, answers 401."""
        doc = await uploaded(client)
        response = await client.delete(
            archive_path(doc["id"]), headers=ISSUER_ROLE, query_string={"archived_by": "me"}
        )
        await problem(response, 401, "UNAUTHENTICATED")
