"""EPR_MOCK_MODE=false: the permission service decides, asked over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
import structlog
import trio
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from trio.testing import wait_all_tasks_blocked

from actors.access import ServiceAuthorizer
from tests.http.helpers import (
    archive_path,
    assert_decided,
    decisions,
    download_path,
    list_path,
    post_upload,
    problem,
    uploaded,
    verify,
)
from tests.http.service_decides import TIMEOUT
from tests.permission_service import Answer, FakePermissionService, closed_port_url
from tests.support import actor_headers
from vault.adapters.permissions_service import CachedPermissions, DecisionCache, EprClient
from vault.domain.errors import DependencyUnavailable, Forbidden
from vault.domain.models import Action, Actor, Role


def bodies(service: FakePermissionService) -> list[Any]:
    return [request.body for request in service.requests]


def asked(user: UUID, action: str, resource: UUID) -> dict[str, str]:
    """The body the contract says the service receives."""
    return {
        "user_id": str(user), "action": action, "resource_id": str(resource),
        "principal_type": "user",
    }


async def _on_document(
    client: Client, service: FakePermissionService, action: str, headers: dict[str, str],
    **extra: str,
) -> tuple[dict[str, Any], Response]:
    """Upload a document (allowed), forget that call, then ``action`` it with ``headers``."""
    doc = await uploaded(client, headers=actor_headers(Role.ADMIN), **extra)
    service.requests.clear()
    match action:
        case "download":
            response = await client.get(download_path(doc["id"]), headers=headers)
        case "verify":
            response = await verify(client, doc["id"], headers)
        case "archive":
            response = await client.delete(archive_path(doc["id"]), headers=headers)
        case _:
            raise AssertionError(action)
    return doc, response


DOCUMENT_ACTIONS = {"download": 200, "verify": 200, "archive": 200}


def uploads_allowed_then(answer: Answer) -> Callable[[Any], Answer]:
    """The service's answer: allow uploads (so a document exists), ``answer`` the rest."""
    return lambda body: "allow" if body["action"] == "document:upload" else answer


class TestAllow:
    async def test_upload_asks_about_the_entity(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """An upload sends the contract's body once, naming the uploader and the entity."""
        actor, entity = uuid4(), uuid4()
        response = await post_upload(
            client, entity_id=entity, headers=actor_headers(Role.ISSUER, actor)
        )
        assert response.status_code == 201
        assert bodies(permission_service) == [asked(actor, "document:upload", entity)]
        assert permission_service.requests[0].path == "/api/v1/authorize"

    @pytest.mark.parametrize("action", list(DOCUMENT_ACTIONS))
    async def test_document_action_asks_about_its_entity(
        self, client: Client, permission_service: FakePermissionService, action: str
    ) -> None:
        """Download, verify and archive send the document's entity_id as resource_id."""
        actor = uuid4()
        doc, response = await _on_document(
            client, permission_service, action, actor_headers(Role.ISSUER, actor)
        )
        assert response.status_code == DOCUMENT_ACTIONS[action]
        assert bodies(permission_service) == [
            asked(actor, f"document:{action}", UUID(doc["entity_id"]))
        ]
        assert doc["entity_id"] != doc["id"]

    async def test_service_decides_not_the_role(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """An investor the service allows may upload: the role matrix is not consulted."""
        response = await post_upload(client, headers=actor_headers(Role.INVESTOR))
        assert response.status_code == 201

    async def test_listing_asks_download_about_the_entity(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Listing sends one document:download question naming the actor and the entity."""
        actor, entity = uuid4(), uuid4()
        response = await client.get(list_path(entity), headers=actor_headers(Role.INVESTOR, actor))
        assert response.status_code == 200
        assert bodies(permission_service) == [asked(actor, "document:download", entity)]

    async def test_listing_again_within_ttl_asks_once(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Listing is cached like the other answers: twice in a row costs one call."""
        headers, entity = actor_headers(Role.AUDITOR), uuid4()
        first = await client.get(list_path(entity), headers=headers)
        second = await client.get(list_path(entity), headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert permission_service.calls == 1

    async def test_listing_checks_the_query_before_asking(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """A bad query is 422 without a call: the request's shape comes before permission."""
        response = await client.get(
            list_path(uuid4()) + "?limit=0", headers=actor_headers(Role.ADMIN)
        )
        await problem(response, 422, "VALIDATION_ERROR")
        assert permission_service.calls == 0

    async def test_repeat_within_ttl_asks_once(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """The same actor downloading the same entity's document twice costs one call."""
        headers = actor_headers(Role.INVESTOR)
        doc, first = await _on_document(client, permission_service, "download", headers)
        second = await client.get(download_path(doc["id"]), headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert permission_service.calls == 1


class TestDeny:
    async def test_denied_upload_is_403(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """A deny on upload answers 403 UNAUTHORIZED_ACCESS, even for an admin."""
        permission_service.answer = "deny"
        response = await post_upload(client, headers=actor_headers(Role.ADMIN))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    @pytest.mark.parametrize("action", list(DOCUMENT_ACTIONS))
    async def test_denied_document_action_is_403(
        self, client: Client, permission_service: FakePermissionService, action: str
    ) -> None:
        """A deny on download, verify or archive answers 403 UNAUTHORIZED_ACCESS."""
        permission_service.answer = uploads_allowed_then("deny")
        _, response = await _on_document(
            client, permission_service, action, actor_headers(Role.ADMIN)
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_denied_listing_is_403(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Who may not download an entity's documents does not see them listed."""
        permission_service.answer = "deny"
        response = await client.get(list_path(uuid4()), headers=actor_headers(Role.ADMIN))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_foreign_seed_field_is_403_without_asking(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """An actor field naming someone else answers 403 before the service is asked."""
        response = await post_upload(
            client, headers=actor_headers(Role.ADMIN), uploaded_by=str(uuid4())
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
        assert permission_service.calls == 0


class TestUnavailable:
    @pytest.mark.parametrize("answer", ["hang", "error", "garbage", "wrong shape"])
    async def test_upload_is_503_never_allowed(
        self, client: Client, permission_service: FakePermissionService, answer: Any
    ) -> None:
        """A hanging, failing or garbled service answers 503 DEPENDENCY_UNAVAILABLE on upload."""
        permission_service.answer = answer
        response = await post_upload(client, headers=actor_headers(Role.ADMIN))
        await problem(response, 503, "DEPENDENCY_UNAVAILABLE")

    @pytest.mark.parametrize("action", list(DOCUMENT_ACTIONS))
    async def test_hanging_service_is_503_for_document_actions(
        self, client: Client, permission_service: FakePermissionService, action: str
    ) -> None:
        """A service that does not answer within EPR_SERVICE_TIMEOUT makes the action 503."""
        permission_service.answer = uploads_allowed_then("hang")
        _, response = await _on_document(
            client, permission_service, action, actor_headers(Role.ADMIN)
        )
        await problem(response, 503, "DEPENDENCY_UNAVAILABLE")

    async def test_failure_is_not_remembered(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Once the service answers again, the next request is allowed."""
        actor, entity = uuid4(), uuid4()
        headers = actor_headers(Role.ISSUER, actor)
        permission_service.answer = "error"
        failed = await post_upload(client, entity_id=entity, headers=headers)
        permission_service.answer = "allow"
        retried = await post_upload(client, entity_id=entity, headers=headers)
        assert (failed.status_code, retried.status_code) == (503, 201)


class TestServiceDown:
    @pytest.fixture
    def epr_url(self) -> str:
        return closed_port_url()

    async def test_down_service_is_503(self, client: Client) -> None:
        """A service that refuses connections answers 503 DEPENDENCY_UNAVAILABLE."""
        response = await post_upload(client, headers=actor_headers(Role.ADMIN))
        body = await problem(response, 503, "DEPENDENCY_UNAVAILABLE")
        assert "permissions service" in body["detail"]

    async def test_listing_fails_closed(self, client: Client) -> None:
        """With the service down, listing answers 503, never the documents."""
        response = await client.get(list_path(uuid4()), headers=actor_headers(Role.AUDITOR))
        await problem(response, 503, "DEPENDENCY_UNAVAILABLE")


class TestDecisionLog:
    async def test_allow_and_deny_are_logged_with_their_source(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """Each decision is logged with actor, action, entity, and the service as its source."""
        permission_service.answer = lambda body: (
            "deny" if body["action"] == "document:archive" else "allow"
        )
        actor, entity = uuid4(), uuid4()
        doc = await uploaded(client, entity_id=entity, headers=actor_headers(Role.ADMIN))
        headers = actor_headers(Role.AUDITOR, actor)
        with structlog.testing.capture_logs() as logs:
            await client.get(download_path(doc["id"]), headers=headers)
            await client.delete(archive_path(doc["id"]), headers=headers)
        decided = decisions(logs)
        assert [(d["action"], d["allowed"]) for d in decided] == [
            ("document:download", True), ("document:archive", False)
        ]
        assert_decided(
            decided, actor=actor, role="auditor", entity=str(entity), source="permissions_service"
        )
        assert all(decision["cached"] is False for decision in decided)

    async def test_cached_decision_is_logged_as_cached(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """A decision answered from the cache is still logged, marked ``cached``."""
        doc = await uploaded(client, headers=actor_headers(Role.ADMIN))
        headers = actor_headers(Role.INVESTOR)
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):
                await client.get(download_path(doc["id"]), headers=headers)
        assert [(d["allowed"], d["cached"]) for d in decisions(logs)] == [
            (True, False), (True, True)
        ]

    async def test_undecided_is_logged_as_a_warning(
        self, client: Client, permission_service: FakePermissionService
    ) -> None:
        """A failed lookup is logged as access_undecided with the reason, not as a decision."""
        permission_service.answer = "error"
        with structlog.testing.capture_logs() as logs:
            await post_upload(client, headers=actor_headers(Role.ADMIN))
        [undecided] = [e for e in logs if e["event"] == "access_undecided"]
        assert undecided["log_level"] == "warning"
        assert undecided["reason"] == "permissions service answered HTTP 500"
        assert not decisions(logs)


@pytest.fixture
def uncached(permission_service: FakePermissionService) -> Iterator[ServiceAuthorizer]:
    """A service authorizer that keeps no answers, so only coalescing can save calls."""
    client = EprClient(permission_service.url, timeout=5)
    authorizer = ServiceAuthorizer(
        CachedPermissions(client, DecisionCache(0)), deadline=5, limiter=trio.CapacityLimiter(10)
    )
    try:
        yield authorizer
    finally:
        authorizer.close()


class TestConcurrentLookups:
    async def test_identical_questions_in_flight_share_one_call(
        self, uncached: ServiceAuthorizer, permission_service: FakePermissionService
    ) -> None:
        """Ten simultaneous identical questions make one call, and all ten are allowed."""
        permission_service.answer = "held"
        actor, entity = Actor.user(uuid4(), Role.ISSUER), uuid4()
        allowed: list[bool] = []

        async def ask() -> None:
            await uncached.authorize(actor, Action.UPLOAD, entity)
            allowed.append(True)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ask)
            await wait_all_tasks_blocked()
            permission_service.gate.set()
        assert allowed == [True] * 10
        assert permission_service.calls == 1

    async def test_shared_failure_reaches_every_waiter(
        self, permission_service: FakePermissionService
    ) -> None:
        """A burst against a hanging service makes one call, and every request gets 503."""
        permission_service.answer = "hang"
        client = EprClient(permission_service.url, timeout=TIMEOUT)
        authorizer = ServiceAuthorizer(
            CachedPermissions(client, DecisionCache(30)),
            deadline=TIMEOUT,
            limiter=trio.CapacityLimiter(10),
        )
        actor, entity = Actor.user(uuid4(), Role.ISSUER), uuid4()
        failures: list[str] = []

        async def ask() -> None:
            try:
                await authorizer.authorize(actor, Action.DOWNLOAD, entity)
            except DependencyUnavailable as exc:
                failures.append(exc.detail)

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(ask)
        finally:
            authorizer.close()
        assert len(failures) == 5
        assert permission_service.calls == 1

    async def test_waiter_asks_again_when_the_first_asker_is_cancelled(
        self, uncached: ServiceAuthorizer, permission_service: FakePermissionService
    ) -> None:
        """If the request that made the call goes away, one waiting on it still gets an answer."""
        permission_service.answer = "held"
        actor, entity = Actor.user(uuid4(), Role.ISSUER), uuid4()
        outcome: list[str] = []

        async def first() -> None:
            with trio.CancelScope() as scope:
                first_scope.append(scope)
                await uncached.authorize(actor, Action.VERIFY, entity)
            outcome.append("first cancelled" if scope.cancelled_caught else "first answered")

        async def second() -> None:
            await uncached.authorize(actor, Action.VERIFY, entity)
            outcome.append("second allowed")

        first_scope: list[trio.CancelScope] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await wait_all_tasks_blocked()
            nursery.start_soon(second)
            await wait_all_tasks_blocked()
            first_scope[0].cancel()
            await wait_all_tasks_blocked()
            permission_service.gate.set()
        assert outcome == ["first cancelled", "second allowed"]

    async def test_system_actor_is_refused_without_a_call(
        self, uncached: ServiceAuthorizer, permission_service: FakePermissionService
    ) -> None:
        """An actor with no user id cannot be asked about, so it is refused, not allowed."""
        with pytest.raises(Forbidden):
            await uncached.authorize(Actor.system(), Action.ARCHIVE, uuid4())
        assert permission_service.calls == 0
