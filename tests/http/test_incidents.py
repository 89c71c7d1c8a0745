"""``GET /api/v1/incidents`` and ``POST /api/v1/incidents/{incident_id}/resolve``.

Every answer is checked against ``http/openapi.yaml`` (``assert_documented``)
and every 4xx is a problem+json (``problem``). Mismatches are made the way
they happen: a stored object altered on disk, then ``POST /documents/verify``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from actors.system import Vault
from tests.http.helpers import API, object_path, outbox, problem, uploaded, verify
from tests.http.test_openapi import assert_documented
from tests.support import actor_headers
from tests.vault.store_helpers import BASE, make_document
from vault.config import Settings
from vault.domain.models import DocumentStatus, Role
from vault.ports import MetadataStore

INCIDENTS = f"{API}/incidents"
LIST_TEMPLATE = "/api/v1/incidents"
RESOLVE_TEMPLATE = "/api/v1/incidents/{incident_id}/resolve"


def resolve_path(incident_id: UUID | str) -> str:
    return f"{INCIDENTS}/{incident_id}/resolve"


async def get_incidents(
    client: Client, query: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> Response:
    sent = dict(actor_headers(Role.AUDITOR) if headers is None else headers)
    return await client.get(INCIDENTS, query_string=dict(query), headers=sent)


async def listed(client: Client, **query: str) -> dict[str, Any]:
    """A page that must be answered 200, checked against the document."""
    body: dict[str, Any] = await assert_documented(
        await get_incidents(client, query), "GET", LIST_TEMPLATE, 200
    )
    return body


async def post_resolve(
    client: Client,
    incident_id: UUID | str,
    headers: Mapping[str, str] | None = None,
    *,
    body: Any = None,
    data: bytes | None = None,
) -> Response:
    sent = dict(actor_headers(Role.COMPLIANCE_OFFICER) if headers is None else headers)
    sent["Content-Type"] = "application/json"
    if data is None:
        data = json.dumps({"resolution": "restored"} if body is None else body).encode()
    return await client.post(resolve_path(incident_id), data=data, headers=sent)


async def documented_problem(
    response: Response, method: str, path: str, status: int, error_code: str
) -> dict[str, Any]:
    body = await problem(response, status, error_code)
    await assert_documented(response, method, path, status)
    return body


def _flip_byte(settings: Settings, storage_key: str) -> None:
    path = object_path(settings, storage_key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def tamper(settings: Settings, doc: Mapping[str, Any]) -> None:
    await trio.to_thread.run_sync(_flip_byte, settings, doc["storage_key"])


async def verified_mismatch(client: Client, doc: Mapping[str, Any]) -> None:
    response = await verify(client, doc["id"])
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["status"] == "mismatch"


async def open_incident(client: Client, settings: Settings) -> dict[str, Any]:
    """An entity's incident opened by one tampered document verified through the API."""
    entity = uuid4()
    doc = await uploaded(client, entity_id=entity, headers=actor_headers(Role.ADMIN))
    await tamper(settings, doc)
    await verified_mismatch(client, doc)
    (incident,) = (await listed(client, entity_id=str(entity)))["incidents"]
    assert isinstance(incident, dict)
    return incident


def seed_mismatches(store: MetadataStore, count: int) -> None:
    """``count`` incidents, each of its own entity, straight through the store."""
    for i in range(count):
        doc = store.record_upload(make_document(), lambda _: [], unique_hash=True)
        store.record_verification(
            doc.id, status=DocumentStatus.MISMATCH, calculated_hash="f" * 64,
            verified_by=None, verified_at=BASE + timedelta(seconds=i // 3), events=lambda _: [],
        )


class TestListRoles:
    @pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR, Role.COMPLIANCE_OFFICER])
    async def test_readers_may_list(self, client: Client, role: Role) -> None:
        """Admins, auditors and compliance officers are answered a page."""
        response = await get_incidents(client, {}, actor_headers(role))
        body = await assert_documented(response, "GET", LIST_TEMPLATE, 200)
        assert body == {"incidents": [], "next_cursor": None}

    @pytest.mark.parametrize("role", [Role.ISSUER, Role.INVESTOR])
    async def test_others_are_forbidden(self, client: Client, role: Role) -> None:
        """Issuers and investors are refused with 403."""
        response = await get_incidents(client, {}, actor_headers(role))
        await documented_problem(response, "GET", LIST_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")

    async def test_no_identity_is_401(self, client: Client) -> None:
        """A request without identity is refused with 401, before its bad query."""
        response = await client.get(INCIDENTS, query_string={"status": "closed"})
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        await assert_documented(response, "GET", LIST_TEMPLATE, 401)


class TestListValidation:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("entity_id", "not-a-uuid"),
            ("entity_id", "1234"),
            ("status", "closed"),
            ("status", "OPEN"),
            ("status", ""),
            ("cursor", "%%%not-base64"),
            ("cursor", base64.urlsafe_b64encode(b'["x", "y"]').decode()),
            ("cursor", base64.urlsafe_b64encode(b'{"a": 1}').decode()),
            ("cursor", base64.urlsafe_b64encode(
                json.dumps(["2025-01-01T00:00:00", str(uuid4())]).encode()).decode()),
        ],
        ids=["entity-text", "entity-number", "status-closed", "status-upper", "status-empty",
             "cursor-garbage", "cursor-not-a-position", "cursor-object", "cursor-naive"],
    )
    async def test_bad_query_is_422_naming_it(
        self, client: Client, name: str, value: str
    ) -> None:
        """A malformed entity_id, status or cursor answers 422 naming the parameter."""
        response = await get_incidents(client, {name: value})
        body = await documented_problem(response, "GET", LIST_TEMPLATE, 422, "VALIDATION_ERROR")
        assert ["query", name] in [error["loc"] for error in body["errors"]]

    async def test_422_comes_before_403(self, client: Client) -> None:
        """An investor's malformed query answers 422, not 403."""
        response = await get_incidents(client, {"status": "closed"}, actor_headers(Role.INVESTOR))
        await documented_problem(response, "GET", LIST_TEMPLATE, 422, "VALIDATION_ERROR")


class TestResolveRoles:
    @pytest.mark.parametrize("role", [Role.COMPLIANCE_OFFICER, Role.ADMIN])
    async def test_resolvers_may_resolve(
        self, client: Client, settings: Settings, role: Role
    ) -> None:
        """Compliance officers and admins resolve: 200 with the incident, resolved by them."""
        incident = await open_incident(client, settings)
        who = uuid4()

        response = await post_resolve(
            client, incident["incident_id"], actor_headers(role, who),
            body={"resolution": "Blob restored from the WORM copy"},
        )

        body = await assert_documented(response, "POST", RESOLVE_TEMPLATE, 200)
        assert body == {
            **incident,
            "status": "resolved",
            "resolved_at": body["resolved_at"],
            "resolved_by": str(who),
            "resolution": "Blob restored from the WORM copy",
        }
        assert body["resolved_at"] is not None

    @pytest.mark.parametrize("role", [Role.AUDITOR, Role.ISSUER, Role.INVESTOR])
    async def test_others_are_forbidden(
        self, client: Client, settings: Settings, role: Role
    ) -> None:
        """Auditors (who may read incidents), issuers and investors may not resolve one;
        the incident stays open."""
        incident = await open_incident(client, settings)

        response = await post_resolve(client, incident["incident_id"], actor_headers(role))

        await documented_problem(response, "POST", RESOLVE_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")
        (still,) = (await listed(client, entity_id=incident["entity_id"]))["incidents"]
        assert still == incident

    async def test_no_identity_is_401(self, client: Client) -> None:
        """Without identity the answer is 401, before the malformed body and unknown id."""
        response = await client.post(
            resolve_path(uuid4()), data=b"{", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        await assert_documented(response, "POST", RESOLVE_TEMPLATE, 401)


class TestResolveValidation:
    @pytest.mark.parametrize(
        "body",
        [{"resolution": ""}, {"resolution": "   \n\t"}, {"resolution": "x" * 2001},
         {"resolution": 5}, {"resolution": None}, {"resolution": ["fixed"]}, {}],
        ids=["empty", "blank", "too-long", "number", "null", "list", "missing"],
    )
    async def test_bad_resolution_is_422(
        self, client: Client, settings: Settings, body: dict[str, Any]
    ) -> None:
        """A resolution that is not a non-empty string of at most 2000 characters answers
        422 naming it, and the incident stays open."""
        incident = await open_incident(client, settings)

        response = await post_resolve(client, incident["incident_id"], body=body)

        problem_body = await documented_problem(
            response, "POST", RESOLVE_TEMPLATE, 422, "VALIDATION_ERROR"
        )
        assert ["body", "resolution"] in [error["loc"] for error in problem_body["errors"]]
        (still,) = (await listed(client, entity_id=incident["entity_id"]))["incidents"]
        assert still["status"] == "open"

    async def test_resolution_of_2000_characters_is_accepted(
        self, client: Client, settings: Settings
    ) -> None:
        """The longest resolution allowed is kept whole."""
        incident = await open_incident(client, settings)
        text = "é" * 2000

        response = await post_resolve(client, incident["incident_id"], body={"resolution": text})

        body = await assert_documented(response, "POST", RESOLVE_TEMPLATE, 200)
        assert body["resolution"] == text

    @pytest.mark.parametrize(
        "data", [b"{resolution:", b"", b'["resolution"]', b'"fixed"', b"\xff\xfe"],
        ids=["not-json", "empty", "array", "string", "not-utf8"],
    )
    async def test_body_that_is_not_a_json_object_is_422(
        self, client: Client, settings: Settings, data: bytes
    ) -> None:
        """A body that is not a JSON object answers 422."""
        incident = await open_incident(client, settings)

        response = await post_resolve(client, incident["incident_id"], data=data)

        await documented_problem(response, "POST", RESOLVE_TEMPLATE, 422, "VALIDATION_ERROR")

    async def test_incident_id_that_is_not_a_uuid_is_422(self, client: Client) -> None:
        """A path id that is not a UUID answers 422 naming it."""
        response = await post_resolve(client, "not-a-uuid")

        body = await documented_problem(
            response, "POST", RESOLVE_TEMPLATE, 422, "VALIDATION_ERROR"
        )
        assert ["path", "incident_id"] in [error["loc"] for error in body["errors"]]

    async def test_422_comes_before_404(self, client: Client) -> None:
        """An empty resolution for an unknown incident answers 422."""
        response = await post_resolve(client, uuid4(), body={"resolution": ""})

        await documented_problem(response, "POST", RESOLVE_TEMPLATE, 422, "VALIDATION_ERROR")


class TestResolveOutcome:
    @pytest.mark.parametrize("role", [Role.COMPLIANCE_OFFICER, Role.AUDITOR, Role.INVESTOR])
    async def test_unknown_incident_is_404_before_403(self, client: Client, role: Role) -> None:
        """An id that names no incident answers 404, to a resolver and to a role that
        may not resolve alike (404 comes before 403)."""
        response = await post_resolve(client, uuid4(), actor_headers(role))

        await documented_problem(response, "POST", RESOLVE_TEMPLATE, 404, "INCIDENT_NOT_FOUND")

    async def test_resolving_twice_is_409(self, client: Client, settings: Settings) -> None:
        """A second resolution answers 409 and keeps the first."""
        incident = await open_incident(client, settings)
        first = await post_resolve(client, incident["incident_id"], body={"resolution": "one"})
        resolved = await assert_documented(first, "POST", RESOLVE_TEMPLATE, 200)

        again = await post_resolve(client, incident["incident_id"], body={"resolution": "two"})

        await documented_problem(
            again, "POST", RESOLVE_TEMPLATE, 409, "INCIDENT_ALREADY_RESOLVED"
        )
        (kept,) = (await listed(client, entity_id=incident["entity_id"]))["incidents"]
        assert kept == resolved

    async def test_403_comes_before_409(self, client: Client, settings: Settings) -> None:
        """An auditor resolving an incident resolved already is answered 403."""
        incident = await open_incident(client, settings)
        assert (await post_resolve(client, incident["incident_id"])).status_code == 200

        response = await post_resolve(client, incident["incident_id"], actor_headers(Role.AUDITOR))

        await documented_problem(response, "POST", RESOLVE_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")


class TestMismatchThroughTheApi:
    async def test_verified_mismatch_shows_up_with_its_documents(
        self, client: Client, settings: Settings
    ) -> None:
        """Two tampered documents of one entity, verified through the API, are one open
        incident listing both; each alert in the outbox names it."""
        entity = uuid4()
        admin = actor_headers(Role.ADMIN)
        docs = [
            await uploaded(client, entity_id=entity, headers=admin, filename=name)
            for name in ("a.pdf", "b.pdf")
        ]
        unrelated = await uploaded(client, headers=admin)
        for doc in docs:
            await tamper(settings, doc)
            await verified_mismatch(client, doc)
        intact = await verify(client, unrelated["id"])
        assert (await intact.get_json())["status"] == "verified"

        page = await listed(client)

        (incident,) = page["incidents"]
        assert page["next_cursor"] is None
        assert incident["entity_id"] == str(entity)
        assert incident["entity_type"] == docs[0]["entity_type"]
        assert incident["status"] == "open"
        assert (incident["resolved_at"], incident["resolved_by"], incident["resolution"]) == (
            None, None, None,
        )
        by_id = {d["document_id"]: d for d in incident["documents"]}
        assert set(by_id) == {doc["id"] for doc in docs}
        for doc in docs:
            listed_doc = by_id[doc["id"]]
            assert listed_doc["filename"] == doc["filename"]
            assert listed_doc["expected_hash"] == doc["sha256_hash"]
            # The local blob store refuses bytes that fail its own check: no hash at all.
            assert listed_doc["calculated_hash"] != doc["sha256_hash"]
        assert incident["last_detected_at"] == max(d["detected_at"] for d in by_id.values())
        assert incident["opened_at"] == min(d["detected_at"] for d in by_id.values())
        alerts = [row for row in await outbox(settings) if row["destination"] == "integrity_alerts"]
        assert [(a["document_id"], a["incident_id"]) for a in alerts] == [
            (doc["id"], incident["incident_id"]) for doc in docs
        ]

    async def test_missing_object_is_listed_without_a_calculated_hash(
        self, client: Client, settings: Settings
    ) -> None:
        """A document whose bytes vanished is listed with a null calculated hash."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity, headers=actor_headers(Role.ADMIN))
        await trio.to_thread.run_sync(object_path(settings, doc["storage_key"]).unlink)
        await verified_mismatch(client, doc)

        (incident,) = (await listed(client, entity_id=str(entity)))["incidents"]

        (listed_doc,) = incident["documents"]
        assert listed_doc["calculated_hash"] is None

    async def test_resolved_incident_moves_between_the_status_filters(
        self, client: Client, settings: Settings
    ) -> None:
        """Once resolved, the incident is listed under status=resolved, not open; the
        entity's next mismatch opens a new incident."""
        entity = uuid4()
        admin = actor_headers(Role.ADMIN)
        first = await uploaded(client, entity_id=entity, headers=admin)
        second = await uploaded(client, entity_id=entity, headers=admin)
        await tamper(settings, first)
        await verified_mismatch(client, first)
        (incident,) = (await listed(client, entity_id=str(entity)))["incidents"]
        assert (await post_resolve(client, incident["incident_id"])).status_code == 200

        opened = await listed(client, entity_id=str(entity), status="open")
        closed = await listed(client, entity_id=str(entity), status="resolved")
        assert opened["incidents"] == []
        assert [i["incident_id"] for i in closed["incidents"]] == [incident["incident_id"]]

        await tamper(settings, second)
        await verified_mismatch(client, second)
        (new,) = (await listed(client, entity_id=str(entity), status="open"))["incidents"]
        assert new["incident_id"] != incident["incident_id"]
        assert [d["document_id"] for d in new["documents"]] == [second["id"]]
        both = await listed(client, entity_id=str(entity))
        assert [i["incident_id"] for i in both["incidents"]] == [
            new["incident_id"], incident["incident_id"],
        ]


class TestPaging:
    async def test_next_cursor_visits_every_incident_once(
        self, client: Client, vault: Vault
    ) -> None:
        """More than a page: 50, then the rest with next_cursor null, newest opened first,
        every incident exactly once."""
        await trio.to_thread.run_sync(seed_mismatches, vault.backends.store, 57)

        seen: list[dict[str, Any]] = []
        sizes: list[int] = []
        query: dict[str, str] = {}
        while True:
            page = await listed(client, **query)
            sizes.append(len(page["incidents"]))
            seen.extend(page["incidents"])
            if page["next_cursor"] is None:
                break
            query = {"cursor": page["next_cursor"]}

        assert sizes == [50, 7]
        assert len({i["incident_id"] for i in seen}) == 57
        keys = [(i["opened_at"], UUID(i["incident_id"])) for i in seen]
        assert keys == sorted(keys, reverse=True)

    async def test_a_full_last_page_has_no_next_cursor(
        self, client: Client, vault: Vault
    ) -> None:
        """Exactly 50 incidents fit one page, with next_cursor null."""
        await trio.to_thread.run_sync(seed_mismatches, vault.backends.store, 50)

        page = await listed(client)

        assert (len(page["incidents"]), page["next_cursor"]) == (50, None)

    async def test_cursor_keeps_the_filters(
        self, client: Client, vault: Vault, settings: Settings
    ) -> None:
        """Paging with a status filter lists only that status on every page."""
        await trio.to_thread.run_sync(seed_mismatches, vault.backends.store, 52)
        incident = await open_incident(client, settings)
        assert (await post_resolve(client, incident["incident_id"])).status_code == 200

        first = await listed(client, status="open")
        rest = await listed(client, status="open", cursor=first["next_cursor"])
        resolved = await listed(client, status="resolved")

        assert (len(first["incidents"]), len(rest["incidents"])) == (50, 2)
        assert all(i["status"] == "open" for i in first["incidents"] + rest["incidents"])
        assert rest["next_cursor"] is None
        assert [i["incident_id"] for i in resolved["incidents"]] == [incident["incident_id"]]
