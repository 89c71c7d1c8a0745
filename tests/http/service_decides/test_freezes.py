"""Entity freeze and unfreeze with EPR_MOCK_MODE=false: the permission service decides.

``POST /api/v1/entities/{entity_id}/freeze`` and ``.../unfreeze`` ask the
service ``document:archive`` about the entity *instead of* the role matrix
(``http/freezes.py``): whoever the service allows may change a freeze,
whatever their role, and an admin it denies may not. The service is a real
HTTP server on loopback (``tests.permission_service``); every answer is
checked against ``http/openapi.yaml``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
import structlog
from quart.typing import TestClientProtocol as Client

from actors.system import Vault
from tests.http.helpers import assert_decided, decisions, post_upload
from tests.http.service_decides import TIMEOUT
from tests.http.test_freezes import (
    FREEZE_TEMPLATE,
    UNFREEZE_TEMPLATE,
    UPLOAD_TEMPLATE,
    change,
    changed,
    documented_problem,
    freeze_events,
    freeze_of,
    frozen_answer,
)
from tests.permission_service import Answer, FakePermissionService, closed_port_url
from tests.support import actor_headers
from vault.config import Settings
from vault.domain.models import Actor, Role

ARCHIVE = "document:archive"
CHANGERS = [Role.ADMIN, Role.COMPLIANCE_OFFICER]
"""The roles the matrix lets freeze (in mock mode)."""
OTHERS = [Role.INVESTOR, Role.AUDITOR, Role.ISSUER]
"""The roles the matrix refuses (in mock mode)."""
NEVER_FROZEN = {"frozen": False, "since": None, "reason": None, "incident_id": None, "by": None}

by_route = pytest.mark.parametrize("frozen", [True, False], ids=["freeze", "unfreeze"])


def template(frozen: bool) -> str:
    return FREEZE_TEMPLATE if frozen else UNFREEZE_TEMPLATE


def asked(user: UUID, action: str, resource: UUID) -> dict[str, str]:
    """The body the contract says the service receives."""
    return {
        "user_id": str(user), "action": action, "resource_id": str(resource),
        "principal_type": "user",
    }


def bodies(service: FakePermissionService) -> list[Any]:
    return [request.body for request in service.requests]


async def frozen_by_hand(vault: Vault, entity: UUID, reason: str = "set up") -> dict[str, Any]:
    """Freeze ``entity`` straight through the vault (no HTTP, no permission service)."""
    found = await vault.freezes.change(
        entity, frozen=True, actor=Actor.user(uuid4(), Role.ADMIN), reason=reason,
        correlation_id=None,
    )
    assert found.frozen
    return {"entity_id": str(entity), "frozen": True, "reason": reason, "by": str(found.by)}


async def starting_state(
    client: Client, vault: Vault, service: FakePermissionService, frozen: bool
) -> tuple[UUID, dict[str, Any]]:
    """An entity in the state opposite to what the route under test asks for, and its
    freeze as ``GET`` shows it; the service has been asked nothing about it."""
    entity = uuid4()
    if not frozen:
        await frozen_by_hand(vault, entity)
    before = await freeze_of(client, entity)
    assert before["frozen"] is (not frozen)
    assert service.calls == 0
    return entity, before


class TestAllowed:
    @pytest.mark.parametrize("role", CHANGERS)
    async def test_freeze_then_unfreeze(
        self, client: Client, settings: Settings, permission_service: FakePermissionService,
        role: Role,
    ) -> None:
        """Allowed by the service: the freeze is the actor's, with their reason, and GET
        shows it; the unfreeze lifts it; both are audit events by that actor."""
        actor, entity = uuid4(), uuid4()
        headers = actor_headers(role, actor)

        body = await changed(client, entity, headers=headers, body={"reason": "court order 17"})
        assert body["entity_id"] == str(entity)
        assert body["frozen"] is True
        assert body["by"] == str(actor)
        assert body["reason"] == "court order 17"
        assert body["incident_id"] is None
        assert body["since"] is not None
        assert await freeze_of(client, entity) == body

        lifted = await changed(
            client, entity, frozen=False, headers=headers, body={"reason": "order lifted"}
        )
        assert lifted["frozen"] is False
        assert (await freeze_of(client, entity))["frozen"] is False
        events = await freeze_events(settings, entity)
        assert [(e["action"], e["actor_id"]) for e in events] == [
            ("entity.frozen", str(actor)), ("entity.unfrozen", str(actor))
        ]
        assert [e["details"]["reason"] for e in events] == ["court order 17", "order lifted"]

    @by_route
    async def test_asks_archive_about_the_entity(
        self, client: Client, vault: Vault, permission_service: FakePermissionService,
        frozen: bool,
    ) -> None:
        """One question to /api/v1/authorize: document:archive, the actor, the entity."""
        entity, _ = await starting_state(client, vault, permission_service, frozen)
        actor = uuid4()
        await changed(
            client, entity, frozen=frozen, headers=actor_headers(Role.COMPLIANCE_OFFICER, actor)
        )
        assert bodies(permission_service) == [asked(actor, ARCHIVE, entity)]
        assert permission_service.requests[0].method == "POST"
        assert permission_service.requests[0].path == "/api/v1/authorize"

    @by_route
    async def test_the_answer_is_per_entity(
        self, client: Client, vault: Vault, permission_service: FakePermissionService,
        frozen: bool,
    ) -> None:
        """The service's answer about this entity is the one that counts: allowed on one
        entity, denied on another, for the same actor."""
        allowed, _ = await starting_state(client, vault, permission_service, frozen)
        denied, before = await starting_state(client, vault, permission_service, frozen)
        permission_service.answer = lambda body: (
            "deny" if body["resource_id"] == str(denied) else "allow"
        )
        headers = actor_headers(Role.ADMIN)
        body = await changed(client, allowed, frozen=frozen, headers=headers)
        assert body["frozen"] is frozen
        refused = await change(client, denied, frozen=frozen, headers=headers)
        await documented_problem(refused, "POST", template(frozen), 403, "UNAUTHORIZED_ACCESS")
        assert await freeze_of(client, denied) == before

    @pytest.mark.parametrize("role", OTHERS)
    async def test_the_service_decides_not_the_role(
        self, client: Client, settings: Settings, permission_service: FakePermissionService,
        role: Role,
    ) -> None:
        """A role the matrix refuses is not refused up front: the service is asked, and
        when it allows, the freeze is that actor's."""
        actor, entity = uuid4(), uuid4()
        body = await changed(client, entity, headers=actor_headers(role, actor))
        assert body["frozen"] is True
        assert body["by"] == str(actor)
        assert bodies(permission_service) == [asked(actor, ARCHIVE, entity)]
        assert [e["actor_id"] for e in await freeze_events(settings, entity)] == [str(actor)]

    async def test_unfreeze_within_ttl_asks_once(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Freeze and unfreeze ask the same question (archive, actor, entity), so the second
        is answered from the cache."""
        headers, entity = actor_headers(Role.COMPLIANCE_OFFICER), uuid4()
        await changed(client, entity, headers=headers)
        await changed(client, entity, frozen=False, headers=headers)
        assert permission_service.calls == 1

    async def test_decision_is_logged_with_its_source(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """The decision is logged as access_decided: archive, the actor, the entity, the
        service as its source."""
        actor, entity = uuid4(), uuid4()
        with structlog.testing.capture_logs() as logs:
            await changed(client, entity, headers=actor_headers(Role.ADMIN, actor))
        decided = decisions(logs)
        assert [(d["action"], d["allowed"], d["cached"]) for d in decided] == [
            (ARCHIVE, True, False)
        ]
        assert_decided(
            decided, actor=actor, role="admin", entity=str(entity), source="permissions_service"
        )

    async def test_a_service_allowed_freeze_blocks_uploads(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """The freeze is a real one: an upload the service allows then answers 423."""
        entity = uuid4()
        await changed(client, entity, headers=actor_headers(Role.COMPLIANCE_OFFICER))
        response = await post_upload(client, entity_id=entity, headers=actor_headers(Role.ADMIN))
        await frozen_answer(response, "POST", UPLOAD_TEMPLATE, entity, None)

    async def test_reading_asks_nothing(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """GET .../freeze is open to any identified actor: no question to the service, even
        when it would deny."""
        permission_service.answer = "deny"
        entity = uuid4()
        assert await freeze_of(client, entity) == {"entity_id": str(entity), **NEVER_FROZEN}
        assert permission_service.calls == 0


class TestChecksBeforeAsking:
    @by_route
    async def test_no_identity_is_401_without_asking(
        self, client: Client, permission_service: FakePermissionService, frozen: bool
    ) -> None:
        response = await change(client, uuid4(), frozen=frozen, headers={})
        await documented_problem(response, "POST", template(frozen), 401, "UNAUTHENTICATED")
        assert permission_service.calls == 0

    @by_route
    @pytest.mark.parametrize("body", [{}, {"reason": "  "}, {"reason": 5}],
                             ids=["missing", "blank", "number"])
    async def test_bad_reason_is_422_without_asking(
        self, client: Client, permission_service: FakePermissionService, frozen: bool,
        body: Any,
    ) -> None:
        """The request's shape comes before permission (401, 422, 403)."""
        permission_service.answer = "deny"
        response = await change(
            client, uuid4(), frozen=frozen, headers=actor_headers(Role.INVESTOR), body=body
        )
        problem_body = await documented_problem(
            response, "POST", template(frozen), 422, "VALIDATION_ERROR"
        )
        assert ["body", "reason"] in [error["loc"] for error in problem_body["errors"]]
        assert permission_service.calls == 0

    @by_route
    async def test_bad_entity_id_is_422_without_asking(
        self, client: Client, permission_service: FakePermissionService, frozen: bool
    ) -> None:
        response = await change(client, "not-a-uuid", frozen=frozen)
        await documented_problem(response, "POST", template(frozen), 422, "VALIDATION_ERROR")
        assert permission_service.calls == 0


class TestDenied:
    @by_route
    @pytest.mark.parametrize("role", CHANGERS)
    async def test_denied_is_403_and_changes_nothing(
        self, client: Client, vault: Vault, settings: Settings,
        permission_service: FakePermissionService, frozen: bool, role: Role,
    ) -> None:
        """A deny is 403 UNAUTHORIZED_ACCESS even for an admin or a compliance officer;
        the freeze stays as it was and no audit event is written."""
        entity, before = await starting_state(client, vault, permission_service, frozen)
        events = await freeze_events(settings, entity)
        permission_service.answer = "deny"
        actor = uuid4()
        response = await change(client, entity, frozen=frozen, headers=actor_headers(role, actor))
        body = await documented_problem(
            response, "POST", template(frozen), 403, "UNAUTHORIZED_ACCESS"
        )
        assert ARCHIVE in body["detail"]
        assert bodies(permission_service) == [asked(actor, ARCHIVE, entity)]
        assert await freeze_of(client, entity) == before
        assert await freeze_events(settings, entity) == events

    async def test_denied_unfreeze_keeps_a_freeze_made_over_http(
        self, client: Client, settings: Settings, permission_service: FakePermissionService
    ) -> None:
        """An officer the service allows freezes; an admin it denies cannot lift it."""
        entity, officer = uuid4(), uuid4()
        before = await changed(
            client, entity, headers=actor_headers(Role.COMPLIANCE_OFFICER, officer)
        )
        permission_service.answer = "deny"
        response = await change(client, entity, frozen=False, headers=actor_headers(Role.ADMIN))
        await documented_problem(response, "POST", UNFREEZE_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")
        assert await freeze_of(client, entity) == before
        assert before["by"] == str(officer)
        assert [e["action"] for e in await freeze_events(settings, entity)] == ["entity.frozen"]

    async def test_deny_is_logged(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        permission_service.answer = "deny"
        actor, entity = uuid4(), uuid4()
        with structlog.testing.capture_logs() as logs:
            await change(client, entity, headers=actor_headers(Role.COMPLIANCE_OFFICER, actor))
        decided = decisions(logs)
        assert [(d["action"], d["allowed"]) for d in decided] == [(ARCHIVE, False)]
        assert_decided(
            decided, actor=actor, role="compliance_officer", entity=str(entity),
            source="permissions_service",
        )

    @pytest.mark.parametrize("role", OTHERS)
    async def test_a_role_the_matrix_refuses_is_refused_by_the_service(
        self, client: Client, permission_service: FakePermissionService, role: Role
    ) -> None:
        """An investor, auditor or issuer is refused because the service denies, after it
        was asked: one question, the detail naming the service's deny."""
        permission_service.answer = "deny"
        actor, entity = uuid4(), uuid4()
        response = await change(client, entity, headers=actor_headers(role, actor))
        body = await documented_problem(response, "POST", FREEZE_TEMPLATE, 403,
                                        "UNAUTHORIZED_ACCESS")
        assert "permissions service" in body["detail"]
        assert bodies(permission_service) == [asked(actor, ARCHIVE, entity)]
        assert await freeze_of(client, entity) == {"entity_id": str(entity), **NEVER_FROZEN}


class TestUnavailable:
    @by_route
    @pytest.mark.parametrize("answer", ["hang", "error", "garbage", "wrong shape"])
    async def test_is_503_and_changes_nothing(
        self, client: Client, vault: Vault, settings: Settings,
        permission_service: FakePermissionService, frozen: bool, answer: Answer,
    ) -> None:
        """A hanging, failing or garbled service: 503 DEPENDENCY_UNAVAILABLE, never an
        allow; the freeze stays as it was and no audit event is written."""
        entity, before = await starting_state(client, vault, permission_service, frozen)
        events = await freeze_events(settings, entity)
        permission_service.answer = answer
        response = await change(client, entity, frozen=frozen, headers=actor_headers(Role.ADMIN))
        body = await documented_problem(
            response, "POST", template(frozen), 503, "DEPENDENCY_UNAVAILABLE"
        )
        assert "permissions service" in body["detail"]
        assert permission_service.calls == 1
        assert await freeze_of(client, entity) == before
        assert await freeze_events(settings, entity) == events

    async def test_hang_names_the_timeout(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        permission_service.answer = "hang"
        response = await change(client, uuid4(), headers=actor_headers(Role.ADMIN))
        body = await documented_problem(response, "POST", FREEZE_TEMPLATE, 503,
                                        "DEPENDENCY_UNAVAILABLE")
        assert body["detail"] == f"permissions service did not answer within {TIMEOUT:g} s"

    async def test_failure_is_not_remembered(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Once the service answers again, the same actor's freeze goes through."""
        headers, entity = actor_headers(Role.COMPLIANCE_OFFICER), uuid4()
        permission_service.answer = "error"
        failed = await change(client, entity, headers=headers)
        await documented_problem(failed, "POST", FREEZE_TEMPLATE, 503, "DEPENDENCY_UNAVAILABLE")
        permission_service.answer = "allow"
        body = await changed(client, entity, headers=headers)
        assert body["frozen"] is True
        assert permission_service.calls == 2


class TestServiceDown:
    @pytest.fixture
    def epr_url(self) -> str:
        return closed_port_url()

    @by_route
    async def test_down_service_is_503_and_changes_nothing(
        self, client: Client, vault: Vault, settings: Settings, frozen: bool
    ) -> None:
        """A service that refuses connections: 503, the freeze as it was, no event."""
        entity = uuid4()
        if not frozen:
            await frozen_by_hand(vault, entity)
        before = await freeze_of(client, entity)
        events = await freeze_events(settings, entity)
        response = await change(
            client, entity, frozen=frozen, headers=actor_headers(Role.COMPLIANCE_OFFICER)
        )
        body = await documented_problem(
            response, "POST", template(frozen), 503, "DEPENDENCY_UNAVAILABLE"
        )
        assert "permissions service" in body["detail"]
        assert await freeze_of(client, entity) == before
        assert await freeze_events(settings, entity) == events

    async def test_reading_still_works(self, client: Client, vault: Vault) -> None:
        """GET .../freeze needs no answer from the service."""
        entity = uuid4()
        made = await frozen_by_hand(vault, entity, reason="kept")
        body = await freeze_of(client, entity)
        assert {key: body[key] for key in made} == made
