"""``http/openapi.yaml`` is valid, complete, and what the service really answers."""

from __future__ import annotations

import json
import re
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import yaml
from jsonschema.exceptions import SchemaError
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec
from quart.wrappers import Response
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from actors.ledger import LogState, Publish
from actors.runtime import ask
from actors.system import Vault
from tests.support import actor_headers, multipart_body, pdf_bytes, test_settings, upload_fields
from vault.config import Settings
from vault.domain.models import DocumentStatus, DocumentType, EntityType, Role
from vault_http import operator as operator_routes
from vault_http.app import VaultApp

if TYPE_CHECKING:
    # Imported by name only: pytest would try to collect a class called Test*.
    from quart.typing import TestClientProtocol

SPEC_PATH = Path(operator_routes.__file__).with_name("openapi.yaml")
SPEC_URI = "urn:document-vault:openapi"

CONTRACT_DOCUMENT_FIELDS = [
    "id", "entity_type", "entity_id", "token_id", "document_type", "filename", "mime_type",
    "size_bytes", "storage_bucket", "storage_key", "sha256_hash", "status", "uploaded_by",
    "verified_by", "archived_by", "archived_at", "hash_verified_at", "on_chain_reference",
    "metadata", "created_at", "updated_at",
]
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text("utf-8"))
    return document


@cache
def registry() -> Registry:
    return Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec()))


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(node: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """Follow a local ``$ref`` (responses are often references); return node and its pointer."""
    while "$ref" in node:
        where = node["$ref"]
        node = spec()
        for part in where.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, where


def template_key(path: str) -> str:
    """A path with its parameters' names erased: ``/a/{x}`` and ``/a/<y>`` are both ``/a/{}``."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path)


def documented_response(method: str, path: str, status: int) -> tuple[dict[str, Any], str]:
    operation = spec()["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {path} does not document status {status}"
    return resolve(
        responses[str(status)], pointer("paths", path, method.lower(), "responses", str(status))
    )


async def assert_documented(
    response: Response, method: str, path: str, status: int | None = None
) -> Any:
    """The response's status, headers, media type and body are what the document says."""
    status = status if status is not None else response.status_code
    assert response.status_code == status, await response.get_data(as_text=True)
    documented, where = documented_response(method, path, status)
    request_id = response.headers.get("X-Request-ID", "")
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", request_id)
    for name, header in documented.get("headers", {}).items():
        header, _ = resolve(header, "")
        if header.get("required"):
            assert name in response.headers, f"missing documented header {name}"
    media_type = (response.mimetype or "").lower()
    content = documented.get("content", {})
    assert media_type in content or "*/*" in content, (
        f"{method} {path} {status} answered {media_type}, documented {sorted(content)}"
    )
    if media_type not in content or not media_type.endswith("json"):
        return None
    body = json.loads(await response.get_data())
    schema_ref = f"{SPEC_URI}{where}/content/{media_type.replace('/', '~1')}/schema"
    validator = OAS31Validator(
        {"$ref": schema_ref}, registry=registry(), format_checker=oas31_format_checker
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors
    ) + f"\nbody: {body}"
    return body


async def upload(
    client: TestClientProtocol, headers: dict[str, str], entity: uuid.UUID, content: bytes
) -> Response:
    body, content_type = multipart_body(
        upload_fields(entity), ("contract.pdf", content, "application/pdf")
    )
    return await client.post(
        "/api/v1/documents/upload", data=body, headers={**headers, "Content-Type": content_type}
    )


@pytest.fixture
def headers() -> dict[str, str]:
    return actor_headers(Role.ADMIN)


@pytest.fixture
async def document(client: TestClientProtocol, headers: dict[str, str]) -> dict[str, Any]:
    response = await upload(client, headers, uuid.uuid4(), pdf_bytes(300))
    assert response.status_code == 201, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


class TestTheDocument:
    def test_is_valid_openapi(self) -> None:
        """The document passes the OpenAPI 3.1 specification validator."""
        validate_spec(spec())

    def test_every_component_schema_is_a_valid_schema(self) -> None:
        """Every component schema is a valid OAS 3.1 schema object."""
        for name, schema in spec()["components"]["schemas"].items():
            try:
                OAS31Validator.check_schema(schema)
            except SchemaError as exc:
                pytest.fail(f"components.schemas.{name}: {exc}")

    def test_every_reference_resolves(self) -> None:
        """Each ``$ref`` in the document points at something that exists."""
        text = SPEC_PATH.read_text("utf-8")
        for ref in sorted(set(re.findall(r"\$ref: '([^']+)'", text))):
            resolve({"$ref": ref}, ref)

    def test_describes_the_service(self) -> None:
        """The info block names the service, its version and what it does."""
        info = spec()["info"]
        assert info["title"] == "Document Vault"
        assert info["version"] == "0.1.0"
        assert len(info["description"]) > 200

    def test_no_two_paths_differ_only_in_parameter_names(self) -> None:
        """OpenAPI forbids templates that are identical once parameter names are ignored."""
        keys = [template_key(p) for p in spec()["paths"]]
        assert len(keys) == len(set(keys))

    def test_identity_schemes_are_declared(self) -> None:
        """Bearer JWT and the two header identity schemes are the API's security."""
        schemes = spec()["components"]["securitySchemes"]
        assert schemes["bearerAuth"]["scheme"] == "bearer"
        assert {schemes["actorId"]["name"], schemes["actorRole"]["name"]} == {
            "X-Actor-Id", "X-Actor-Role"
        }
        assert spec()["security"] == [{"bearerAuth": []}, {"actorId": [], "actorRole": []}]

    def test_every_error_response_is_a_problem(self) -> None:
        """Each 4xx and 5xx of the /api/v1 routes is ``application/problem+json``."""
        for path, item in spec()["paths"].items():
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                for status, response in operation["responses"].items():
                    if int(status) < 400 or not path.startswith("/api/"):
                        continue
                    resolved, _ = resolve(response, "")
                    assert list(resolved["content"]) == ["application/problem+json"], (
                        f"{method.upper()} {path} {status}"
                    )
                    assert "X-Request-ID" in resolved["headers"]

    async def test_is_served_as_json(self, client: TestClientProtocol) -> None:
        """``GET /openapi.json`` answers the YAML document converted to JSON."""
        response = await client.get("/openapi.json")
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert await response.get_json() == spec()

    async def test_docs_page_lists_every_path(self, client: TestClientProtocol) -> None:
        """``GET /docs`` is an HTML page naming every documented path."""
        response = await client.get("/docs")
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert response.mimetype == "text/html"
        page = await response.get_data(as_text=True)
        for path in spec()["paths"]:
            assert path in page


class TestRoutesAgree:
    @staticmethod
    def served(app: VaultApp) -> set[tuple[str, str]]:
        pairs = set()
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            for method in (rule.methods or set()) - AUTOMATIC_METHODS:
                pairs.add((method, template_key(rule.rule)))
        return pairs

    @staticmethod
    def documented() -> set[tuple[str, str]]:
        return {
            (method.upper(), template_key(path))
            for path, item in spec()["paths"].items()
            for method in item
            if method in HTTP_METHODS
        }

    async def test_every_route_is_documented(self, app: VaultApp) -> None:
        """Each route the app serves appears in ``paths`` with its method."""
        assert self.served(app) - self.documented() == set()

    async def test_every_documented_operation_is_served(self, app: VaultApp) -> None:
        """Each operation in ``paths`` is a route the app serves."""
        assert self.documented() - self.served(app) == set()

    def test_path_parameters_are_declared(self) -> None:
        """Each ``{name}`` in a path has a required path parameter of that name."""
        for path, item in spec()["paths"].items():
            names = set(re.findall(r"\{([^}]+)\}", path))
            shared = [resolve(p, "")[0] for p in item.get("parameters", [])]
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                params = shared + [resolve(p, "")[0] for p in operation.get("parameters", [])]
                declared = {p["name"] for p in params if p["in"] == "path" and p["required"]}
                assert declared == names, f"{method.upper()} {path}"


class TestDocumentSchema:
    def test_properties_are_the_contracts_fields(self) -> None:
        """The Document schema has exactly the contract's fields, all required, no others."""
        schema = spec()["components"]["schemas"]["Document"]
        assert list(schema["properties"]) == CONTRACT_DOCUMENT_FIELDS
        assert schema["required"] == CONTRACT_DOCUMENT_FIELDS
        assert schema["additionalProperties"] is False

    def test_enums_match_the_models(self) -> None:
        """The entity type, document type, status and role enums are the code's."""
        schemas = spec()["components"]["schemas"]
        assert schemas["EntityType"]["enum"] == [e.value for e in EntityType]
        assert schemas["DocumentType"]["enum"] == [e.value for e in DocumentType]
        assert schemas["DocumentStatus"]["enum"] == [e.value for e in DocumentStatus]
        assert schemas["Role"]["enum"] == [e.value for e in Role]


class TestResponsesMatch:
    async def test_upload(self, client: TestClientProtocol, headers: dict[str, str]) -> None:
        """A 201 upload answers a documented Document."""
        response = await upload(client, headers, uuid.uuid4(), pdf_bytes(300))
        await assert_documented(response, "POST", "/api/v1/documents/upload", 201)

    async def test_list(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """A listing answers a documented DocumentList."""
        response = await client.get(
            f"/api/v1/documents/{document['entity_id']}",
            query_string={"include_archived": "true", "limit": "10"}, headers=headers,
        )
        body = await assert_documented(response, "GET", "/api/v1/documents/{id}", 200)
        assert [d["id"] for d in body["documents"]] == [document["id"]]

    async def test_verify(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """A verification answers a documented Document with its timestamps filled."""
        response = await client.post(
            "/api/v1/documents/verify", json={"document_id": document["id"]}, headers=headers
        )
        body = await assert_documented(response, "POST", "/api/v1/documents/verify", 200)
        assert body["status"] == "verified"

    async def test_download_url_and_blob(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """A download URL answers a documented DownloadUrl, and its blob route is documented."""
        response = await client.get(
            f"/api/v1/documents/{document['id']}/download", headers=headers
        )
        body = await assert_documented(
            response, "GET", "/api/v1/documents/{document_id}/download", 200
        )
        blob_path = "/" + body["download_url"].split("/", 3)[3]
        blob = await client.get(blob_path)
        await assert_documented(blob, "GET", "/api/v1/blobs/{token}", 200)

    async def test_archive(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """An archive answers a documented ArchiveResult."""
        response = await client.delete(f"/api/v1/documents/{document['id']}", headers=headers)
        await assert_documented(response, "DELETE", "/api/v1/documents/{id}", 200)

    async def test_not_found(self, client: TestClientProtocol, headers: dict[str, str]) -> None:
        """An unknown document answers a documented 404 problem."""
        response = await client.post(
            "/api/v1/documents/verify", json={"document_id": str(uuid.uuid4())}, headers=headers
        )
        await assert_documented(response, "POST", "/api/v1/documents/verify", 404)

    async def test_duplicate(
        self, client: TestClientProtocol, headers: dict[str, str]
    ) -> None:
        """A duplicate upload answers a documented 409 problem naming the first document."""
        entity, content = uuid.uuid4(), pdf_bytes(300)
        first = await upload(client, headers, entity, content)
        second = await upload(client, headers, entity, content)
        body = await assert_documented(second, "POST", "/api/v1/documents/upload", 409)
        assert body["existing_document_id"] == (await first.get_json())["id"]

    async def test_validation_error(
        self, client: TestClientProtocol, headers: dict[str, str]
    ) -> None:
        """An out-of-range limit answers a documented 422 problem."""
        response = await client.get(
            f"/api/v1/documents/{uuid.uuid4()}", query_string={"limit": "0"}, headers=headers
        )
        await assert_documented(response, "GET", "/api/v1/documents/{id}", 422)

    async def test_unauthenticated(self, client: TestClientProtocol) -> None:
        """A request without identity answers a documented 401 problem."""
        response = await client.get(f"/api/v1/documents/{uuid.uuid4()}")
        await assert_documented(response, "GET", "/api/v1/documents/{id}", 401)

    async def test_forbidden(self, client: TestClientProtocol) -> None:
        """An investor's upload answers a documented 403 problem."""
        response = await upload(
            client, actor_headers(Role.INVESTOR), uuid.uuid4(), pdf_bytes(300)
        )
        await assert_documented(response, "POST", "/api/v1/documents/upload", 403)

    async def test_empty_file(self, client: TestClientProtocol, headers: dict[str, str]) -> None:
        """A zero-byte upload answers a documented 400 problem."""
        response = await upload(client, headers, uuid.uuid4(), b"")
        body = await assert_documented(response, "POST", "/api/v1/documents/upload", 400)
        assert body["error_code"] == "EMPTY_FILE"

    async def test_invalid_file_type(
        self, client: TestClientProtocol, headers: dict[str, str]
    ) -> None:
        """Bytes that are not what the declared type claims answer a documented 400 problem."""
        response = await upload(client, headers, uuid.uuid4(), b"not a pdf at all")
        body = await assert_documented(response, "POST", "/api/v1/documents/upload", 400)
        assert body["error_code"] == "INVALID_FILE_TYPE"

    async def test_too_large(
        self, client: TestClientProtocol, headers: dict[str, str]
    ) -> None:
        """A declared Content-Length far over the limit answers a documented 413 problem."""
        response = await client.post(
            "/api/v1/documents/upload", data=b"x",
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b",
                     "Content-Length": str(2**40)},
        )
        await assert_documented(response, "POST", "/api/v1/documents/upload", 413)

    async def test_invalid_expiry(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """An expiry over an hour answers a documented 400 problem."""
        response = await client.get(
            f"/api/v1/documents/{document['id']}/download",
            query_string={"expires_in": "3601"}, headers=headers,
        )
        await assert_documented(response, "GET", "/api/v1/documents/{document_id}/download", 400)

    async def test_tampered_blob_token(self, client: TestClientProtocol) -> None:
        """A forged blob token answers a documented 403 problem."""
        response = await client.get("/api/v1/blobs/e30.AAAA")
        await assert_documented(response, "GET", "/api/v1/blobs/{token}", 403)

    async def test_healthz(self, client: TestClientProtocol) -> None:
        """``/healthz`` answers a documented Health."""
        response = await client.get("/healthz")
        body = await assert_documented(response, "GET", "/healthz", 200)
        assert body["status"] == "ok"

    async def test_healthz_actors(self, client: TestClientProtocol) -> None:
        """``/healthz/actors`` answers documented snapshots, one per actor."""
        response = await client.get("/healthz/actors")
        body = await assert_documented(response, "GET", "/healthz/actors", 200)
        assert len(body["actors"]) == 7

    async def test_healthz_actor(self, client: TestClientProtocol) -> None:
        """``/healthz/actors/{name}`` answers a documented snapshot, disabled ones too."""
        for name in ("upload", "entity_deletion_poller"):
            response = await client.get(f"/healthz/actors/{name}")
            await assert_documented(response, "GET", "/healthz/actors/{name}", 200)

    async def test_healthz_unknown_actor(self, client: TestClientProtocol) -> None:
        """An unknown actor name answers a documented 404 problem."""
        response = await client.get("/healthz/actors/nobody")
        await assert_documented(response, "GET", "/healthz/actors/{name}", 404)

    async def test_readyz(self, client: TestClientProtocol) -> None:
        """``/readyz`` answers a documented Readiness."""
        response = await client.get("/readyz")
        body = await assert_documented(response, "GET", "/readyz", 200)
        assert body["checks"] == {
            "database": "ok", "blob_store": "ok", "object_lock": "ok", "versioning": "ok",
            "queues": "ok"
        }

    async def test_metrics(self, client: TestClientProtocol) -> None:
        """``/metrics`` answers documented Prometheus text."""
        response = await client.get("/metrics")
        await assert_documented(response, "GET", "/metrics", 200)


async def publish(vault: Vault) -> LogState:
    """Have the ledger integrate what is pending and sign a checkpoint now."""
    return await ask(vault.ledger, Publish, deadline=trio.current_time() + 5, returns=LogState)


class TestLedgerResponsesMatch:
    """The ledger routes answer what the document says, on a ledger that only signs when asked."""

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", ledger_checkpoint_interval_seconds=3600)

    async def test_checkpoint_and_key(
        self, client: TestClientProtocol, vault: Vault, document: dict[str, Any]
    ) -> None:
        """The checkpoint and the key answer documented text."""
        await publish(vault)
        response = await client.get("/api/v1/ledger/checkpoint")
        await assert_documented(response, "GET", "/api/v1/ledger/checkpoint", 200)
        response = await client.get("/api/v1/ledger/key")
        await assert_documented(response, "GET", "/api/v1/ledger/key", 200)
        documented, _ = documented_response("GET", "/api/v1/ledger/key", 200)
        pattern = documented["content"]["text/plain"]["schema"]["pattern"]
        assert re.fullmatch(pattern, await response.get_data(as_text=True))

    async def test_no_checkpoint(self, client: TestClientProtocol) -> None:
        """An empty log's checkpoint is a documented 404 problem."""
        response = await client.get("/api/v1/ledger/checkpoint")
        await assert_documented(response, "GET", "/api/v1/ledger/checkpoint", 404)

    async def test_tiles_and_bundles(
        self, client: TestClientProtocol, vault: Vault, headers: dict[str, str],
        document: dict[str, Any],
    ) -> None:
        """Tiles and bundles answer documented bytes; a missing one, an anonymous bundle and
        a path that names nothing answer documented problems."""
        await publish(vault)
        tile = "/api/v1/ledger/tile/{tile_path}"
        bundle = "/api/v1/ledger/tile/entries/{bundle_path}"
        for value in spec()["paths"][tile]["get"]["parameters"][1]["examples"].values():
            assert re.fullmatch(
                spec()["paths"][tile]["get"]["parameters"][1]["schema"]["pattern"],
                value["value"],
            )
        await assert_documented(await client.get("/api/v1/ledger/tile/0/000.p/1"), "GET", tile, 200)
        await assert_documented(await client.get("/api/v1/ledger/tile/0/000"), "GET", tile, 404)
        await assert_documented(await client.get("/api/v1/ledger/tile/0/0"), "GET", tile, 404)
        response = await client.get("/api/v1/ledger/tile/entries/000.p/1", headers=headers)
        await assert_documented(response, "GET", bundle, 200)
        response = await client.get("/api/v1/ledger/tile/entries/000.p/1")
        await assert_documented(response, "GET", bundle, 401)
        response = await client.get("/api/v1/ledger/tile/entries/001", headers=headers)
        await assert_documented(response, "GET", bundle, 404)

    async def test_consistency(
        self, client: TestClientProtocol, vault: Vault, headers: dict[str, str],
        document: dict[str, Any],
    ) -> None:
        """A consistency proof answers a documented Consistency; a bad range a 422 problem."""
        await publish(vault)
        await upload(client, headers, uuid.uuid4(), pdf_bytes(300))
        await publish(vault)
        path = "/api/v1/ledger/consistency"
        response = await client.get(path, query_string={"from": "1", "to": "2"})
        body = await assert_documented(response, "GET", path, 200)
        assert (body["from"], body["to"], len(body["hashes"])) == (1, 2, 1)
        response = await client.get(path, query_string={"from": "0"})
        await assert_documented(response, "GET", path, 422)

    async def test_receipt(
        self, client: TestClientProtocol, vault: Vault, headers: dict[str, str],
        document: dict[str, Any],
    ) -> None:
        """A receipt answers a documented 202 until a checkpoint covers it, then a Receipt."""
        path = "/api/v1/documents/{document_id}/receipt"
        url = f"/api/v1/documents/{document['id']}/receipt"
        pending = await assert_documented(await client.get(url, headers=headers), "GET", path, 202)
        assert pending["document_id"] == document["id"]
        await publish(vault)
        body = await assert_documented(await client.get(url, headers=headers), "GET", path, 200)
        assert body["document_id"] == document["id"]

    async def test_receipt_problems(
        self, client: TestClientProtocol, headers: dict[str, str], document: dict[str, Any]
    ) -> None:
        """Every refusal of a receipt is a documented problem."""
        path = "/api/v1/documents/{document_id}/receipt"
        url = f"/api/v1/documents/{document['id']}/receipt"
        await assert_documented(await client.get(url), "GET", path, 401)
        response = await client.get(
            url, query_string={"requestor_id": str(uuid.uuid4())}, headers=headers
        )
        await assert_documented(response, "GET", path, 403)
        response = await client.get(
            f"/api/v1/documents/{uuid.uuid4()}/receipt", headers=headers
        )
        await assert_documented(response, "GET", path, 404)
        response = await client.get(url, query_string={"size": "x"}, headers=headers)
        await assert_documented(response, "GET", path, 422)
