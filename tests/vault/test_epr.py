"""The permission service's client and its cache, against a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import httpx
import pytest

from tests.permission_service import Answer, FakePermissionService, closed_port_url
from vault.adapters.permissions_service import (
    CachedPermissions,
    DecisionCache,
    DecisionKey,
    EprClient,
)
from vault.domain.errors import DependencyUnavailable
from vault.domain.models import Action


@pytest.fixture
def client(permission_service: FakePermissionService) -> Iterator[EprClient]:
    epr = EprClient(permission_service.url, timeout=0.5)
    try:
        yield epr
    finally:
        epr.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key() -> DecisionKey:
    return (uuid4(), Action.DOWNLOAD, uuid4())


class TestAnswers:
    def test_allow(self, permission_service: FakePermissionService, client: EprClient) -> None:
        """``{"authorized": true}`` is an allow."""
        assert client.is_authorized(uuid4(), Action.UPLOAD, uuid4()) is True

    def test_deny(self, permission_service: FakePermissionService, client: EprClient) -> None:
        """``{"authorized": false}`` is a deny."""
        permission_service.answer = "deny"
        assert client.is_authorized(uuid4(), Action.UPLOAD, uuid4()) is False

    def test_request_is_the_contracts(
        self, permission_service: FakePermissionService, client: EprClient
    ) -> None:
        """The call is a JSON POST to /api/v1/authorize with the contract's four fields."""
        user, entity = uuid4(), uuid4()
        client.is_authorized(user, Action.ARCHIVE, entity)
        [sent] = permission_service.requests
        assert (sent.method, sent.path) == ("POST", "/api/v1/authorize")
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.body == {
            "user_id": str(user),
            "action": "document:archive",
            "resource_id": str(entity),
            "principal_type": "user",
        }

    @pytest.mark.parametrize("suffix", ["/", "/epr", "/epr/"])
    def test_base_url_may_carry_a_path(
        self, permission_service: FakePermissionService, suffix: str
    ) -> None:
        """EPR_SERVICE_URL with a trailing slash or a path prefix still reaches the route."""
        epr = EprClient(permission_service.url + suffix, timeout=0.5)
        try:
            epr.is_authorized(uuid4(), Action.VERIFY, uuid4())
        finally:
            epr.close()
        assert permission_service.requests[0].path == suffix.rstrip("/") + "/api/v1/authorize"

    def test_request_id_is_forwarded(
        self, permission_service: FakePermissionService, client: EprClient
    ) -> None:
        """The caller's request id travels as X-Request-ID, for tracing across services."""
        client.is_authorized(uuid4(), Action.VERIFY, uuid4(), request_id="req-42")
        assert permission_service.requests[0].headers["X-Request-ID"] == "req-42"


class TestUnavailable:
    @pytest.mark.parametrize(
        ("answer", "detail"),
        [
            ("error", "permissions service answered HTTP 500"),
            ("redirect", "permissions service answered HTTP 302"),
            ("garbage", "permissions service answered with an unexpected body"),
            ("wrong shape", "permissions service answered with an unexpected body"),
            ("empty", "permissions service answered with an unexpected body"),
            ("huge", "permissions service answered with an unexpected body"),
        ],
    )
    def test_bad_answer_is_unavailable_never_allow(
        self, permission_service: FakePermissionService, client: EprClient, answer: Answer,
        detail: str,
    ) -> None:
        """A non-2xx status or a body other than ``{"authorized": bool}`` is 503, not an allow."""
        permission_service.answer = answer
        with pytest.raises(DependencyUnavailable) as caught:
            client.is_authorized(uuid4(), Action.UPLOAD, uuid4())
        assert caught.value.detail == detail
        assert caught.value.status == 503
        assert caught.value.error_code == "DEPENDENCY_UNAVAILABLE"

    def test_hanging_service_times_out(self, permission_service: FakePermissionService) -> None:
        """A service that does not answer within EPR_SERVICE_TIMEOUT is unavailable."""
        permission_service.answer = "hang"
        epr = EprClient(permission_service.url, timeout=0.2)
        try:
            with pytest.raises(DependencyUnavailable) as caught:
                epr.is_authorized(uuid4(), Action.UPLOAD, uuid4())
        finally:
            epr.close()
        assert caught.value.detail == "permissions service did not answer within 0.2 s"
        assert permission_service.calls == 1

    def test_closed_port_is_unreachable(self) -> None:
        """A service that refuses connections is unavailable."""
        epr = EprClient(closed_port_url(), timeout=0.5)
        try:
            with pytest.raises(DependencyUnavailable) as caught:
                epr.is_authorized(uuid4(), Action.UPLOAD, uuid4())
        finally:
            epr.close()
        assert caught.value.detail == "permissions service unreachable (ConnectError)"


def _leaf_errors(cls: type[httpx.RequestError]) -> list[type[httpx.RequestError]]:
    subclasses = cls.__subclasses__()
    if not subclasses:
        return [cls]
    return [leaf for sub in subclasses for leaf in _leaf_errors(sub)]


class TestErrorMapping:
    @pytest.mark.parametrize("error", _leaf_errors(httpx.RequestError), ids=lambda c: c.__name__)
    def test_every_httpx_request_error_is_mapped(self, error: type[httpx.RequestError]) -> None:
        """Whatever httpx raises while asking becomes DependencyUnavailable, with its cause kept."""

        def fail(request: httpx.Request) -> httpx.Response:
            raise error("simulated", request=request)

        epr = EprClient("http://epr.invalid", timeout=1, transport=httpx.MockTransport(fail))
        try:
            with pytest.raises(DependencyUnavailable) as caught:
                epr.is_authorized(uuid4(), Action.UPLOAD, uuid4())
        finally:
            epr.close()
        assert isinstance(caught.value.__cause__, error)


class TestDecisionCache:
    @pytest.mark.parametrize(
        ("elapsed", "answer", "entries"),
        [
            pytest.param(29.9, True, 1, id="kept-within-ttl"),
            pytest.param(30, None, 0, id="gone-at-ttl-taking-no-room"),
        ],
    )
    def test_an_answer_lasts_until_its_ttl(
        self, elapsed: float, answer: bool | None, entries: int
    ) -> None:
        """An answer put in the cache is returned until its TTL runs out; at its TTL it is
        gone, and it no longer takes room."""
        clock = FakeClock()
        cache = DecisionCache(30, clock=clock)
        k = key()
        cache.put(k, True)
        clock.now += elapsed
        assert cache.get(k) is answer
        assert len(cache) == entries

    def test_deny_is_kept_too(self) -> None:
        """A deny is cached as False, distinct from no answer."""
        cache = DecisionCache(30, clock=FakeClock())
        k = key()
        cache.put(k, False)
        assert cache.get(k) is False

    def test_key_is_user_action_and_resource(self) -> None:
        """Another action, user or resource is another question with no cached answer."""
        cache = DecisionCache(30, clock=FakeClock())
        user, resource = uuid4(), uuid4()
        cache.put((user, Action.DOWNLOAD, resource), True)
        assert cache.get((user, Action.ARCHIVE, resource)) is None
        assert cache.get((uuid4(), Action.DOWNLOAD, resource)) is None
        assert cache.get((user, Action.DOWNLOAD, uuid4())) is None

    def test_size_is_bounded_least_recently_used_first(self) -> None:
        """Past ``max_entries`` the least recently used answer is evicted."""
        cache = DecisionCache(30, max_entries=3, clock=FakeClock())
        first, second, third, fourth = key(), key(), key(), key()
        for k in (first, second, third):
            cache.put(k, True)
        assert cache.get(first) is True  # now the most recently used
        cache.put(fourth, True)
        assert len(cache) == 3
        assert cache.get(second) is None
        assert all(cache.get(k) is True for k in (first, third, fourth))

    def test_zero_ttl_keeps_nothing(self) -> None:
        """EPR_CACHE_TTL_SECONDS=0 turns the cache off."""
        cache = DecisionCache(0, clock=FakeClock())
        k = key()
        cache.put(k, True)
        assert cache.get(k) is None and len(cache) == 0


class TestCachedPermissions:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def permissions(self, client: EprClient, clock: FakeClock) -> CachedPermissions:
        return CachedPermissions(client, DecisionCache(30, clock=clock))

    @pytest.mark.parametrize("answer", ["allow", "deny"])
    def test_second_ask_within_ttl_calls_no_one(
        self, permission_service: FakePermissionService, permissions: CachedPermissions,
        clock: FakeClock, answer: Answer,
    ) -> None:
        """The same question within the TTL is answered from the cache, allow and deny alike."""
        permission_service.answer = answer
        k = key()
        first = permissions.is_authorized(k)
        clock.now += 10
        assert permissions.is_authorized(k) is first is (answer == "allow")
        assert permissions.cached(k) is first
        assert permission_service.calls == 1

    def test_ask_after_expiry_calls_again(
        self, permission_service: FakePermissionService, permissions: CachedPermissions,
        clock: FakeClock,
    ) -> None:
        """Once the TTL has passed, the service is asked again and its new answer used."""
        k = key()
        assert permissions.is_authorized(k) is True
        clock.now += 31
        permission_service.answer = "deny"
        assert permissions.is_authorized(k) is False
        assert permission_service.calls == 2

    def test_failure_is_not_cached(
        self, permission_service: FakePermissionService, permissions: CachedPermissions
    ) -> None:
        """After a failed call, the next ask calls the service again."""
        permission_service.answer = "error"
        k = key()
        with pytest.raises(DependencyUnavailable):
            permissions.is_authorized(k)
        assert permissions.cached(k) is None
        permission_service.answer = "allow"
        assert permissions.is_authorized(k) is True
        assert permission_service.calls == 2

    def test_each_question_is_asked_once(
        self, permission_service: FakePermissionService, permissions: CachedPermissions
    ) -> None:
        """Different questions each cost one call; repeats of them cost none."""
        keys = [key() for _ in range(3)]
        for _ in range(2):
            for k in keys:
                permissions.is_authorized(k)
        assert permission_service.calls == 3
        sent = {(UUID(r.body["user_id"]), r.body["action"]) for r in permission_service.requests}
        assert sent == {(user, action.value) for user, action, _ in keys}
