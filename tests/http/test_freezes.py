"""Entity freezes over HTTP: ``GET``/``POST /api/v1/entities/{entity_id}/freeze`` and
``.../unfreeze``, and the 423 ``ENTITY_FROZEN`` that upload, download URL issuance,
archiving and the embedded signed blob URL answer while an entity is frozen.

Mismatches are made the way they happen: a stored object altered on disk, then
``POST /documents/verify``. Every answer is checked against ``http/openapi.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from tests.http.helpers import (
    API,
    PROBLEM_JSON,
    archive_path,
    audit_rows,
    download_path,
    list_path,
    post_upload,
    problem,
    uploaded,
    url_path,
    verify,
)
from tests.http.test_incidents import tamper
from tests.http.test_openapi import assert_documented, documented_response
from tests.support import actor_headers, test_settings
from vault.config import Settings
from vault.domain.models import Role

FREEZE_TEMPLATE = "/api/v1/entities/{entity_id}/freeze"
UNFREEZE_TEMPLATE = "/api/v1/entities/{entity_id}/unfreeze"
UPLOAD_TEMPLATE = "/api/v1/documents/upload"
DOWNLOAD_TEMPLATE = "/api/v1/documents/{document_id}/download"
ARCHIVE_TEMPLATE = "/api/v1/documents/{id}"
BLOB_TEMPLATE = "/api/v1/blobs/{token}"
LIST_TEMPLATE = "/api/v1/documents/{id}"
VERIFY_TEMPLATE = "/api/v1/documents/verify"
INCIDENTS = f"{API}/incidents"

ADMIN = actor_headers(Role.ADMIN)


def freeze_path(entity_id: UUID | str) -> str:
    return f"{API}/entities/{entity_id}/freeze"


def unfreeze_path(entity_id: UUID | str) -> str:
    return f"{API}/entities/{entity_id}/unfreeze"


async def get_freeze(
    client: Client, entity_id: UUID | str, headers: Mapping[str, str] | None = None
) -> Response:
    sent = dict(actor_headers(Role.INVESTOR) if headers is None else headers)
    return await client.get(freeze_path(entity_id), headers=sent)


async def freeze_of(client: Client, entity_id: UUID | str) -> dict[str, Any]:
    body: dict[str, Any] = await assert_documented(
        await get_freeze(client, entity_id), "GET", FREEZE_TEMPLATE, 200
    )
    return body


async def change(
    client: Client,
    entity_id: UUID | str,
    *,
    frozen: bool = True,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    data: bytes | None = None,
) -> Response:
    sent = dict(actor_headers(Role.COMPLIANCE_OFFICER) if headers is None else headers)
    sent["Content-Type"] = "application/json"
    if data is None:
        data = json.dumps({"reason": "under review"} if body is None else body).encode()
    path = freeze_path(entity_id) if frozen else unfreeze_path(entity_id)
    return await client.post(path, data=data, headers=sent)


async def changed(client: Client, entity_id: UUID | str, **kwargs: Any) -> dict[str, Any]:
    template = FREEZE_TEMPLATE if kwargs.get("frozen", True) else UNFREEZE_TEMPLATE
    body: dict[str, Any] = await assert_documented(
        await change(client, entity_id, **kwargs), "POST", template, 200
    )
    return body


async def documented_problem(
    response: Response, method: str, template: str, status: int, error_code: str
) -> dict[str, Any]:
    body = await problem(response, status, error_code)
    await assert_documented(response, method, template, status)
    return body


async def frozen_answer(
    response: Response, method: str, template: str, entity: UUID, incident: str | None
) -> None:
    """423 ENTITY_FROZEN naming the entity and the incident. The route documents a 423
    problem+json; the body itself is checked against the document in
    ``TestDocumented`` (the ``Problem`` schema refuses its extra fields)."""
    body = await problem(response, 423, "ENTITY_FROZEN")
    assert body["entity_id"] == str(entity)
    assert body["incident_id"] == incident
    documented, _ = documented_response(method, template, 423)
    assert PROBLEM_JSON in documented["content"]


async def freeze_events(settings: Settings, entity: UUID) -> list[dict[str, Any]]:
    return [
        row for row in await audit_rows(settings)
        if row["action"] in {"entity.frozen", "entity.unfrozen"}
        and row["entity_id"] == str(entity)
    ]


async def signed_url(client: Client, document_id: str) -> str:
    response = await client.get(download_path(document_id), headers=ADMIN)
    body = await assert_documented(response, "GET", DOWNLOAD_TEMPLATE, 200)
    return url_path(body["download_url"])


async def mismatch(client: Client, settings: Settings, doc: Mapping[str, Any]) -> None:
    await tamper(settings, doc)
    response = await verify(client, doc["id"])
    body = await assert_documented(response, "POST", VERIFY_TEMPLATE, 200)
    assert body["status"] == "mismatch"


async def open_incident_id(client: Client, entity: UUID) -> str:
    response = await client.get(
        INCIDENTS, query_string={"entity_id": str(entity)}, headers=actor_headers(Role.AUDITOR)
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    (incident,) = (await response.get_json())["incidents"]
    assert incident["status"] == "open"
    incident_id: str = incident["incident_id"]
    return incident_id


class Scene:
    """An entity frozen by a mismatch, with an intact document and a URL issued before."""

    def __init__(
        self, entity: UUID, tampered: dict[str, Any], intact: dict[str, Any], url: str,
        incident: str,
    ) -> None:
        self.entity = entity
        self.tampered = tampered
        self.intact = intact
        self.url = url
        self.incident = incident


@pytest.fixture
async def scene(client: Client, settings: Settings) -> Scene:
    entity = uuid4()
    tampered = await uploaded(client, entity_id=entity, headers=ADMIN)
    intact = await uploaded(client, entity_id=entity, headers=ADMIN, filename="other.pdf",
                            content=b"%PDF-1.4\nanother document\n%%EOF\n")
    url = await signed_url(client, intact["id"])
    await mismatch(client, settings, tampered)
    return Scene(entity, tampered, intact, url, await open_incident_id(client, entity))


async def assert_blocked(client: Client, scene: Scene, incident: str | None) -> None:
    """Upload, download URL, archive and the earlier signed URL all answer 423."""
    entity = scene.entity
    await frozen_answer(
        await post_upload(client, entity_id=entity, headers=ADMIN),
        "POST", UPLOAD_TEMPLATE, entity, incident,
    )
    await frozen_answer(
        await client.get(download_path(scene.intact["id"]), headers=ADMIN),
        "GET", DOWNLOAD_TEMPLATE, entity, incident,
    )
    await frozen_answer(
        await client.delete(archive_path(scene.intact["id"]), headers=ADMIN),
        "DELETE", ARCHIVE_TEMPLATE, entity, incident,
    )
    await frozen_answer(
        await client.get(scene.url), "GET", BLOB_TEMPLATE, entity, incident
    )


async def assert_readable(client: Client, scene: Scene) -> None:
    """Listing and verification keep working."""
    listing = await client.get(list_path(scene.entity), headers=ADMIN)
    body = await assert_documented(listing, "GET", LIST_TEMPLATE, 200)
    assert body
    checked = await verify(client, scene.intact["id"])
    assert (await assert_documented(checked, "POST", VERIFY_TEMPLATE, 200))["status"] == (
        "verified"
    )


class TestMismatchFreezes:
    async def test_mismatch_freezes_its_entity(self, client: Client, scene: Scene) -> None:
        """The freeze names the open incident, with the mismatch's reason and no actor."""
        body = await freeze_of(client, scene.entity)
        assert body["entity_id"] == str(scene.entity)
        assert body["frozen"] is True
        assert body["reason"]
        assert body["incident_id"] == scene.incident
        assert body["by"] is None
        assert body["since"] is not None

    async def test_an_entity_frozen_event_is_written(
        self, client: Client, settings: Settings, scene: Scene
    ) -> None:
        """One ``entity.frozen`` audit event, by the system, naming the incident."""
        (event,) = await freeze_events(settings, scene.entity)
        assert event["action"] == "entity.frozen"
        assert event["entity_type"] == "entity"
        assert event["details"]["incident_id"] == scene.incident
        assert event["details"]["reason"]
        assert event["actor_type"] == "system"

    async def test_guarded_routes_answer_423(self, client: Client, scene: Scene) -> None:
        """Upload, download URL, archive and a signed URL issued before the freeze: 423
        with the entity and the incident."""
        await assert_blocked(client, scene, scene.incident)

    async def test_listing_and_verification_keep_working(
        self, client: Client, scene: Scene
    ) -> None:
        await assert_readable(client, scene)

    async def test_another_entity_is_unaffected(self, client: Client, scene: Scene) -> None:
        other = uuid4()
        doc = await uploaded(client, entity_id=other, headers=ADMIN)
        url = await signed_url(client, doc["id"])
        assert (await client.get(url)).status_code == 200
        archived = await client.delete(archive_path(doc["id"]), headers=ADMIN)
        await assert_documented(archived, "DELETE", ARCHIVE_TEMPLATE, 200)
        assert (await freeze_of(client, other))["frozen"] is False

    async def test_a_second_mismatch_writes_no_second_event(
        self, client: Client, settings: Settings, scene: Scene
    ) -> None:
        """The entity is frozen already: another mismatch changes nothing."""
        before = await freeze_of(client, scene.entity)
        await mismatch(client, settings, scene.intact)
        assert await freeze_of(client, scene.entity) == before
        assert len(await freeze_events(settings, scene.entity)) == 1

    async def test_unfreeze_restores_everything(
        self, client: Client, settings: Settings, scene: Scene
    ) -> None:
        """A compliance officer's unfreeze: the routes answer again, and
        ``entity.unfrozen`` is announced with the reason and the incident."""
        officer = uuid4()
        body = await changed(
            client, scene.entity, frozen=False,
            headers=actor_headers(Role.COMPLIANCE_OFFICER, officer),
            body={"reason": "blob restored"},
        )
        assert body == {
            "entity_id": str(scene.entity), "frozen": False, "since": None, "reason": None,
            "incident_id": None, "by": None,
        }
        assert await freeze_of(client, scene.entity) == body

        events = await freeze_events(settings, scene.entity)
        assert [e["action"] for e in events] == ["entity.frozen", "entity.unfrozen"]
        unfrozen = events[1]
        assert unfrozen["actor_id"] == str(officer)
        assert unfrozen["details"] == {"reason": "blob restored", "incident_id": scene.incident}
        assert unfrozen["entity_type"] == "entity"

        assert (await client.get(scene.url)).status_code == 200
        issued = await client.get(download_path(scene.intact["id"]), headers=ADMIN)
        await assert_documented(issued, "GET", DOWNLOAD_TEMPLATE, 200)
        await uploaded(client, entity_id=scene.entity, headers=ADMIN, filename="new.pdf",
                       content=b"%PDF-1.4\nafter the freeze\n%%EOF\n")
        archived = await client.delete(archive_path(scene.intact["id"]), headers=ADMIN)
        await assert_documented(archived, "DELETE", ARCHIVE_TEMPLATE, 200)


class TestFreezeByHand:
    async def test_freeze_by_hand(self, client: Client, settings: Settings) -> None:
        """A compliance officer's freeze: by them, with their reason, no incident; the
        guarded routes answer 423 with a null incident_id."""
        entity = uuid4()
        intact = await uploaded(client, entity_id=entity, headers=ADMIN)
        url = await signed_url(client, intact["id"])
        officer = uuid4()

        body = await changed(
            client, entity, headers=actor_headers(Role.COMPLIANCE_OFFICER, officer),
            body={"reason": "court order 17"},
        )

        assert body["frozen"] is True
        assert body["reason"] == "court order 17"
        assert body["by"] == str(officer)
        assert body["incident_id"] is None
        assert body["since"] is not None
        assert await freeze_of(client, entity) == body
        (event,) = await freeze_events(settings, entity)
        assert event["action"] == "entity.frozen"
        assert event["actor_id"] == str(officer)
        assert event["details"] == {"reason": "court order 17", "incident_id": None}
        scene = Scene(entity, intact, intact, url, "")
        await assert_blocked(client, scene, None)
        await assert_readable(client, scene)

    async def test_admin_may_freeze_an_unknown_entity(self, client: Client) -> None:
        """An entity without documents can be frozen (its uploads then answer 423)."""
        entity = uuid4()
        body = await changed(client, entity, headers=ADMIN)
        assert body["frozen"] is True
        await frozen_answer(
            await post_upload(client, entity_id=entity, headers=ADMIN),
            "POST", UPLOAD_TEMPLATE, entity, None,
        )

    @pytest.mark.parametrize("file_first", [False, True], ids=["fields_first", "file_first"])
    async def test_a_refused_upload_stores_nothing(
        self, client: Client, file_first: bool
    ) -> None:
        """A frozen entity's upload answers 423 whichever part comes first, and no document
        appears."""
        entity = uuid4()
        await changed(client, entity, headers=ADMIN)
        response = await post_upload(client, entity_id=entity, headers=ADMIN,
                                     file_first=file_first)
        await frozen_answer(response, "POST", UPLOAD_TEMPLATE, entity, None)
        listing = await client.get(list_path(entity), headers=ADMIN)
        body = await assert_documented(listing, "GET", LIST_TEMPLATE, 200)
        assert body["documents"] == []

    async def test_freeze_is_idempotent(self, client: Client, settings: Settings) -> None:
        """Freezing a frozen entity answers it unchanged and announces nothing."""
        entity = uuid4()
        first = await changed(client, entity, body={"reason": "first"})
        again = await changed(client, entity, body={"reason": "second"})
        assert again == first
        assert len(await freeze_events(settings, entity)) == 1

    async def test_unfreeze_is_idempotent(self, client: Client, settings: Settings) -> None:
        """Unfreezing an entity never frozen (or unfrozen already) announces nothing."""
        entity = uuid4()
        body = await changed(client, entity, frozen=False)
        assert body["frozen"] is False
        assert await freeze_events(settings, entity) == []
        await changed(client, entity)
        await changed(client, entity, frozen=False)
        await changed(client, entity, frozen=False)
        actions = [e["action"] for e in await freeze_events(settings, entity)]
        assert actions == ["entity.frozen", "entity.unfrozen"]

    async def test_a_mismatch_after_a_manual_freeze_keeps_it(
        self, client: Client, settings: Settings
    ) -> None:
        """Frozen by hand: a mismatch neither replaces the freeze nor announces one."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity, headers=ADMIN)
        before = await changed(client, entity, body={"reason": "by hand"})
        await mismatch(client, settings, doc)
        assert await freeze_of(client, entity) == before
        assert len(await freeze_events(settings, entity)) == 1

    async def test_reason_is_stripped(self, client: Client) -> None:
        body = await changed(client, uuid4(), body={"reason": "  spaced  "})
        assert body["reason"] == "spaced"

    async def test_longest_reason_is_accepted(self, client: Client) -> None:
        body = await changed(client, uuid4(), body={"reason": "r" * 1000})
        assert body["reason"] == "r" * 1000


class TestRead:
    async def test_never_frozen(self, client: Client) -> None:
        entity = uuid4()
        assert await freeze_of(client, entity) == {
            "entity_id": str(entity), "frozen": False, "since": None, "reason": None,
            "incident_id": None, "by": None,
        }

    @pytest.mark.parametrize("role", list(Role))
    async def test_any_identified_actor_may_read(self, client: Client, role: Role) -> None:
        response = await get_freeze(client, uuid4(), actor_headers(role))
        await assert_documented(response, "GET", FREEZE_TEMPLATE, 200)

    async def test_no_identity_is_401(self, client: Client) -> None:
        response = await client.get(freeze_path(uuid4()))
        await documented_problem(response, "GET", FREEZE_TEMPLATE, 401, "UNAUTHENTICATED")

    async def test_identity_before_a_bad_entity_id(self, client: Client) -> None:
        response = await client.get(freeze_path("not-a-uuid"))
        await documented_problem(response, "GET", FREEZE_TEMPLATE, 401, "UNAUTHENTICATED")

    @pytest.mark.parametrize("entity", ["not-a-uuid", "1234"])
    async def test_bad_entity_id_is_422(self, client: Client, entity: str) -> None:
        response = await get_freeze(client, entity)
        body = await documented_problem(response, "GET", FREEZE_TEMPLATE, 422,
                                        "VALIDATION_ERROR")
        assert ["path", "entity_id"] in [error["loc"] for error in body["errors"]]


@pytest.mark.parametrize("frozen", [True, False], ids=["freeze", "unfreeze"])
class TestChangeChecks:
    @staticmethod
    def template(frozen: bool) -> str:
        return FREEZE_TEMPLATE if frozen else UNFREEZE_TEMPLATE

    @pytest.mark.parametrize("role", [Role.AUDITOR, Role.ISSUER, Role.INVESTOR])
    async def test_others_are_forbidden(
        self, client: Client, settings: Settings, frozen: bool, role: Role
    ) -> None:
        """Auditors, issuers and investors: 403, and the freeze stays as it was."""
        entity = uuid4()
        if not frozen:
            await changed(client, entity)
        before = await freeze_of(client, entity)
        response = await change(client, entity, frozen=frozen, headers=actor_headers(role))
        await documented_problem(response, "POST", self.template(frozen), 403,
                                 "UNAUTHORIZED_ACCESS")
        assert await freeze_of(client, entity) == before
        assert len(await freeze_events(settings, entity)) == (0 if frozen else 1)

    @pytest.mark.parametrize("role", [Role.ADMIN, Role.COMPLIANCE_OFFICER])
    async def test_changers_may(self, client: Client, frozen: bool, role: Role) -> None:
        entity = uuid4()
        if not frozen:
            await changed(client, entity)
        body = await changed(client, entity, frozen=frozen, headers=actor_headers(role))
        assert body["frozen"] is frozen

    async def test_no_identity_is_401(self, client: Client, frozen: bool) -> None:
        response = await change(client, uuid4(), frozen=frozen, headers={})
        await documented_problem(response, "POST", self.template(frozen), 401,
                                 "UNAUTHENTICATED")

    async def test_401_before_422(self, client: Client, frozen: bool) -> None:
        response = await change(client, "not-a-uuid", frozen=frozen, headers={}, body={})
        await documented_problem(response, "POST", self.template(frozen), 401,
                                 "UNAUTHENTICATED")

    @pytest.mark.parametrize("entity", ["not-a-uuid", "1234"])
    async def test_bad_entity_id_is_422(self, client: Client, frozen: bool, entity: str) -> None:
        response = await change(client, entity, frozen=frozen)
        body = await documented_problem(response, "POST", self.template(frozen), 422,
                                        "VALIDATION_ERROR")
        assert ["path", "entity_id"] in [error["loc"] for error in body["errors"]]

    @pytest.mark.parametrize(
        "body",
        [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5}, {"reason": None},
         {"reason": ["x"]}, {"reason": "r" * 1001}],
        ids=["missing", "empty", "blank", "number", "null", "list", "too-long"],
    )
    async def test_bad_reason_is_422(
        self, client: Client, settings: Settings, frozen: bool, body: Any
    ) -> None:
        entity = uuid4()
        if not frozen:
            await changed(client, entity)
        response = await change(client, entity, frozen=frozen, body=body)
        problem_body = await documented_problem(response, "POST", self.template(frozen), 422,
                                                "VALIDATION_ERROR")
        assert ["body", "reason"] in [error["loc"] for error in problem_body["errors"]]
        assert len(await freeze_events(settings, entity)) == (0 if frozen else 1)

    @pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b""], ids=["garbage", "array",
                                                                         "empty"])
    async def test_bad_body_is_422(self, client: Client, frozen: bool, data: bytes) -> None:
        response = await change(client, uuid4(), frozen=frozen, data=data)
        await documented_problem(response, "POST", self.template(frozen), 422,
                                 "VALIDATION_ERROR")

    async def test_422_before_403(self, client: Client, frozen: bool) -> None:
        response = await change(client, uuid4(), frozen=frozen,
                                headers=actor_headers(Role.INVESTOR), body={"reason": ""})
        await documented_problem(response, "POST", self.template(frozen), 422,
                                 "VALIDATION_ERROR")


class TestPrecedence:
    """For a frozen entity, the other refusals come first."""

    async def test_upload(self, client: Client, scene: Scene) -> None:
        entity = scene.entity
        fields = [("entity_id", str(entity)), ("entity_type", "issuer")]
        no_identity = await post_upload(client, entity_id=entity, headers={})
        await documented_problem(no_identity, "POST", UPLOAD_TEMPLATE, 401, "UNAUTHENTICATED")
        bad_field = await post_upload(client, fields=fields, headers=ADMIN)
        await documented_problem(bad_field, "POST", UPLOAD_TEMPLATE, 422, "VALIDATION_ERROR")
        forbidden = await post_upload(client, entity_id=entity,
                                      headers=actor_headers(Role.INVESTOR))
        await documented_problem(forbidden, "POST", UPLOAD_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")
        bad_metadata = await post_upload(client, entity_id=entity, headers=ADMIN,
                                         metadata="{not json")
        await documented_problem(bad_metadata, "POST", UPLOAD_TEMPLATE, 400, "INVALID_METADATA")

    async def test_download(self, client: Client, scene: Scene) -> None:
        path = download_path(scene.intact["id"])
        no_identity = await client.get(path)
        await documented_problem(no_identity, "GET", DOWNLOAD_TEMPLATE, 401, "UNAUTHENTICATED")
        bad_field = await client.get(path, headers=ADMIN, query_string={"expires_in": "soon"})
        await documented_problem(bad_field, "GET", DOWNLOAD_TEMPLATE, 422, "VALIDATION_ERROR")
        unknown = await client.get(download_path(uuid4()), headers=ADMIN)
        await documented_problem(unknown, "GET", DOWNLOAD_TEMPLATE, 404, "DOCUMENT_NOT_FOUND")
        forbidden = await client.get(
            path, headers=actor_headers(Role.INVESTOR), query_string={"requestor_id": str(uuid4())}
        )
        await documented_problem(forbidden, "GET", DOWNLOAD_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")
        bad_expiry = await client.get(path, headers=ADMIN, query_string={"expires_in": "0"})
        await documented_problem(bad_expiry, "GET", DOWNLOAD_TEMPLATE, 400,
                                 "INVALID_SIGNED_URL_EXPIRY")

    async def test_archive(self, client: Client, scene: Scene) -> None:
        path = archive_path(scene.intact["id"])
        no_identity = await client.delete(path)
        await documented_problem(no_identity, "DELETE", ARCHIVE_TEMPLATE, 401, "UNAUTHENTICATED")
        bad_field = await client.delete(archive_path("not-a-uuid"), headers=ADMIN)
        await documented_problem(bad_field, "DELETE", ARCHIVE_TEMPLATE, 422, "VALIDATION_ERROR")
        unknown = await client.delete(archive_path(uuid4()), headers=ADMIN)
        await documented_problem(unknown, "DELETE", ARCHIVE_TEMPLATE, 404, "DOCUMENT_NOT_FOUND")
        for role in (Role.AUDITOR, Role.INVESTOR):
            forbidden = await client.delete(path, headers=actor_headers(role))
            await documented_problem(forbidden, "DELETE", ARCHIVE_TEMPLATE, 403,
                                     "UNAUTHORIZED_ACCESS")

    async def test_blob(self, client: Client, scene: Scene) -> None:
        """A signed URL that does not verify is 403, frozen entity or not."""
        token = scene.url.rsplit("/", 1)[1]
        tampered = f"{API}/blobs/{token[:-2]}{'A' if token[-2] != 'A' else 'B'}{token[-1]}"
        response = await client.get(tampered)
        await documented_problem(response, "GET", BLOB_TEMPLATE, 403, "UNAUTHORIZED_ACCESS")


class TestWithoutFreezeOnMismatch:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", entity_freeze_on_mismatch=False)

    async def test_a_mismatch_does_not_freeze(
        self, client: Client, settings: Settings
    ) -> None:
        entity = uuid4()
        tampered = await uploaded(client, entity_id=entity, headers=ADMIN)
        intact = await uploaded(client, entity_id=entity, headers=ADMIN, filename="other.pdf",
                                content=b"%PDF-1.4\nanother document\n%%EOF\n")
        url = await signed_url(client, intact["id"])
        await mismatch(client, settings, tampered)

        assert (await freeze_of(client, entity))["frozen"] is False
        assert await freeze_events(settings, entity) == []
        assert (await client.get(url)).status_code == 200
        issued = await client.get(download_path(intact["id"]), headers=ADMIN)
        await assert_documented(issued, "GET", DOWNLOAD_TEMPLATE, 200)
        await uploaded(client, entity_id=entity, headers=ADMIN, filename="new.pdf",
                       content=b"%PDF-1.4\nafter the mismatch\n%%EOF\n")


class TestDocumented:
    async def test_423_body_is_what_the_document_says(
        self, client: Client, scene: Scene
    ) -> None:
        response = await client.get(download_path(scene.intact["id"]), headers=ADMIN)
        await documented_problem(response, "GET", DOWNLOAD_TEMPLATE, 423, "ENTITY_FROZEN")
