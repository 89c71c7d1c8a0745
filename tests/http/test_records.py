"""Records management over HTTP: retention policies, a document's retention, legal holds.

Every answer is checked against ``http/openapi.yaml``; the checks come in the
documented order (401, 422, 404, 403).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from tests.http.helpers import API, audit_rows, object_path, problem, uploaded
from tests.http.test_openapi import assert_documented
from tests.support import actor_headers
from vault.config import Settings
from vault.domain.models import Role

ADMIN = actor_headers(Role.ADMIN)
OFFICER = actor_headers(Role.COMPLIANCE_OFFICER)
POLICY_TEMPLATE = "/api/v1/retention-policies/{document_type}"
HOLDS = f"{API}/legal-holds"
SIX_YEARS = {"period": "P6Y", "mode": "compliance", "on_expiry": "review"}


async def send(
    client: Client, method: str, path: str, body: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    sent = dict(ADMIN if headers is None else headers)
    sent["Content-Type"] = "application/json"
    data = None if body is None else json.dumps(body).encode()
    return await client.open(path, method=method, data=data, headers=sent)


async def put_policy(client: Client, body: Any = SIX_YEARS, kind: str = "kyc",
                     headers: dict[str, str] | None = None) -> Response:
    return await send(client, "PUT", f"{API}/retention-policies/{kind}", body, headers)


async def new_hold(client: Client, **body: Any) -> dict[str, Any]:
    sent = {"name": "SEC inquiry", "matter": "In re Token Co.", "reason": "subpoena",
            "custodian": "legal@example.com", **body}
    response = await send(client, "POST", HOLDS, sent, OFFICER)
    created: dict[str, Any] = await assert_documented(response, "POST", "/api/v1/legal-holds",
                                                      201)
    return created


async def retention(client: Client, document_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/documents/{document_id}/retention", headers=ADMIN)
    body: dict[str, Any] = await assert_documented(
        response, "GET", "/api/v1/documents/{document_id}/retention", 200
    )
    return body


class TestPolicies:
    async def test_put_creates_versions_and_get_lists_them(self, client: Client) -> None:
        first = await assert_documented(await put_policy(client), "PUT", POLICY_TEMPLATE, 201)
        assert (first["version"], first["period"], first["documents_lengthened"]) == (1, "P6Y", 0)
        await assert_documented(
            await put_policy(client, {**SIX_YEARS, "period": "P7Y"}), "PUT", POLICY_TEMPLATE, 201
        )
        listed = await assert_documented(
            await client.get(f"{API}/retention-policies", headers=OFFICER),
            "GET", "/api/v1/retention-policies", 200,
        )
        (kyc,) = listed["policies"]
        assert kyc["current"]["version"] == 2
        assert [v["period"] for v in kyc["versions"]] == ["P6Y", "P7Y"]

    async def test_shortening_is_409(self, client: Client) -> None:
        await put_policy(client)
        response = await put_policy(client, {**SIX_YEARS, "period": "P5Y"})
        await problem(response, 409, "RETENTION_CANNOT_SHORTEN")
        await assert_documented(response, "PUT", POLICY_TEMPLATE, 409)

    @pytest.mark.parametrize(("kind", "body", "field"), [
        ("kyc", {**SIX_YEARS, "period": "PT6H"}, "period"),
        ("kyc", {**SIX_YEARS, "mode": "forever"}, "mode"),
        ("kyc", {"period": "P6Y", "mode": "compliance"}, "on_expiry"),
        ("passport", SIX_YEARS, "document_type"),
    ])
    async def test_bad_input_is_422_naming_it(
        self, client: Client, kind: str, body: Any, field: str
    ) -> None:
        response = await put_policy(client, body, kind)
        found = await problem(response, 422, "VALIDATION_ERROR")
        assert field in json.dumps(found["errors"])

    @pytest.mark.parametrize("role", [Role.COMPLIANCE_OFFICER, Role.AUDITOR, Role.ISSUER])
    async def test_only_an_admin_sets_a_policy(self, client: Client, role: Role) -> None:
        await problem(await put_policy(client, headers=actor_headers(role)), 403,
                      "UNAUTHORIZED_ACCESS")

    async def test_no_identity_is_401_before_a_bad_body(self, client: Client) -> None:
        response = await client.put(f"{API}/retention-policies/kyc", data=b"[]",
                                    headers={"Content-Type": "application/json"})
        await problem(response, 401, "UNAUTHENTICATED")


class TestDocumentRetention:
    async def test_under_a_policy_it_is_blocked_by_retention(self, client: Client) -> None:
        await put_policy(client)
        doc = await uploaded(client, document_type="kyc")
        body = await retention(client, doc["id"])
        assert body["policy"] == {"document_type": "kyc", "version": 1}
        assert body["mode"] == "compliance"
        created = datetime.fromisoformat(doc["created_at"])
        assert datetime.fromisoformat(body["retain_until"]) == created.replace(
            year=created.year + 6
        )
        assert (body["disposable"], body["blocked_by"], body["holds"]) == (
            False, ["retention"], []
        )
        assert set(body["storage"]) == {"version_id", "lock_mode", "retain_until", "legal_hold"}

    async def test_without_a_policy_nothing_blocks_until_a_hold(self, client: Client) -> None:
        doc = await uploaded(client)
        body = await retention(client, doc["id"])
        assert (body["policy"], body["disposable"], body["blocked_by"]) == (None, True, [])
        made = await new_hold(client, entity_ids=[doc["entity_id"]])
        body = await retention(client, doc["id"])
        assert body["holds"] == [made["hold_id"]]
        assert body["blocked_by"] == [f"hold:{made['hold_id']}"]
        assert body["disposable"] is False

    async def test_a_document_whose_object_is_gone_shows_no_lock(
        self, client: Client, settings: Settings
    ) -> None:
        doc = await uploaded(client)
        object_path(settings, doc["storage_key"]).unlink()
        body = await retention(client, doc["id"])
        assert body["storage"]["lock_mode"] is None and body["storage"]["legal_hold"] is False

    async def test_unknown_document_is_404_and_investor_403(self, client: Client) -> None:
        response = await client.get(f"{API}/documents/{uuid4()}/retention", headers=ADMIN)
        await problem(response, 404, "DOCUMENT_NOT_FOUND")
        doc = await uploaded(client)
        response = await client.get(f"{API}/documents/{doc['id']}/retention",
                                    headers=actor_headers(Role.INVESTOR))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")


class TestHolds:
    async def test_lifecycle(self, client: Client, settings: Settings) -> None:
        doc = await uploaded(client)
        made = await new_hold(client, document_ids=[doc["id"]])
        assert made["status"] == "active" and made["document_ids"] == [doc["id"]]
        hold_path = f"{HOLDS}/{made['hold_id']}"
        entity = str(uuid4())
        added = await assert_documented(
            await send(client, "POST", f"{hold_path}/items",
                       {"entity_ids": [entity], "reason": "wider"}, OFFICER),
            "POST", "/api/v1/legal-holds/{hold_id}/items", 200,
        )
        assert added["entity_ids"] == [entity]
        removed = await assert_documented(
            await send(client, "POST", f"{hold_path}/items/remove",
                       {"document_ids": [doc["id"]], "reason": "not relevant"}, OFFICER),
            "POST", "/api/v1/legal-holds/{hold_id}/items/remove", 200,
        )
        assert removed["document_ids"] == []
        assert removed["items"][0]["removed_reason"] == "not relevant"
        released = await assert_documented(
            await send(client, "POST", f"{hold_path}/release", {"reason": "closed"}, OFFICER),
            "POST", "/api/v1/legal-holds/{hold_id}/release", 200,
        )
        assert (released["status"], released["release_reason"]) == ("released", "closed")
        again = await send(client, "POST", f"{hold_path}/items",
                           {"entity_ids": [entity], "reason": "x"}, OFFICER)
        await problem(again, 409, "LEGAL_HOLD_RELEASED")
        got = await assert_documented(await client.get(hold_path, headers=ADMIN),
                                      "GET", "/api/v1/legal-holds/{hold_id}", 200)
        assert got == released
        listed = await assert_documented(
            await client.get(f"{HOLDS}?status=released", headers=ADMIN),
            "GET", "/api/v1/legal-holds", 200,
        )
        assert [h["hold_id"] for h in listed["legal_holds"]] == [made["hold_id"]]
        actions = [r["action"] for r in await audit_rows(settings)
                   if r["entity_type"] == "legal_hold"]
        assert actions == ["legal_hold.created", "legal_hold.items_added",
                           "legal_hold.items_removed", "legal_hold.released"]

    async def test_an_unknown_document_is_404(self, client: Client) -> None:
        response = await send(client, "POST", HOLDS, {
            "name": "n", "matter": "m", "reason": "r", "custodian": "c",
            "document_ids": [str(uuid4())],
        }, OFFICER)
        await problem(response, 404, "DOCUMENT_NOT_FOUND")

    @pytest.mark.parametrize(("body", "field"), [
        ({"matter": "m", "reason": "r", "custodian": "c"}, "name"),
        ({"name": "n", "matter": "m", "reason": "r", "custodian": "c", "document_ids": ["x"]},
         "document_ids"),
        ({"name": "n", "matter": "m", "reason": "r", "custodian": "c", "extra": 1}, "extra"),
    ])
    async def test_bad_hold_is_422(self, client: Client, body: Any, field: str) -> None:
        found = await problem(await send(client, "POST", HOLDS, body, OFFICER), 422,
                              "VALIDATION_ERROR")
        assert field in json.dumps(found["errors"])

    async def test_an_item_change_names_something(self, client: Client) -> None:
        made = await new_hold(client)
        response = await send(client, "POST", f"{HOLDS}/{made['hold_id']}/items",
                              {"reason": "nothing"}, OFFICER)
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_unknown_hold_is_404_and_roles_are_checked(self, client: Client) -> None:
        response = await client.get(f"{HOLDS}/{uuid4()}", headers=ADMIN)
        await problem(response, 404, "LEGAL_HOLD_NOT_FOUND")
        denied = await send(client, "POST", HOLDS, {
            "name": "n", "matter": "m", "reason": "r", "custodian": "c",
        }, actor_headers(Role.AUDITOR))
        await problem(denied, 403, "UNAUTHORIZED_ACCESS")
        listed = await client.get(HOLDS, headers=actor_headers(Role.INVESTOR))
        await problem(listed, 403, "UNAUTHORIZED_ACCESS")
