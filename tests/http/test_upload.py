"""``POST /api/v1/documents/upload``: what is stored, what is refused, and in which order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import trio

from actors.system import Vault
from tests.http.helpers import (
    DOCUMENT_FIELDS,
    UPLOAD,
    Client,
    archive_path,
    list_path,
    post_upload,
    problem,
    uploaded,
)
from tests.polling import eventually
from tests.support import actor_headers, multipart_body, pdf_bytes, test_settings, upload_fields
from vault.config import DEFAULT_ALLOWED_MIME_TYPES, Settings
from vault.domain.models import Role
from vault_http.upload import FORM_ROOM

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56


class TestAccepted:
    async def test_answers_201_with_exactly_the_document_fields(
        self, client: Client
    ) -> None:
        """A valid upload answers 201 with the contract's Document, every field filled as sent."""
        entity, actor = uuid4(), uuid4()
        content = pdf_bytes(300)
        response = await post_upload(
            client, entity_id=entity, content=content, filename="agreement.pdf",
            headers=actor_headers(Role.ISSUER, actor), document_type="operating_agreement",
        )
        assert response.status_code == 201
        assert response.mimetype == "application/json"
        doc = await response.get_json()
        assert doc.keys() == DOCUMENT_FIELDS
        UUID(doc["id"])
        assert doc["entity_id"] == str(entity)
        assert doc["entity_type"] == "issuer"
        assert doc["document_type"] == "operating_agreement"
        assert doc["filename"] == "agreement.pdf"
        assert doc["mime_type"] == "application/pdf"
        assert doc["size_bytes"] == 300
        assert doc["sha256_hash"] == hashlib.sha256(content).hexdigest()
        assert doc["status"] == "uploaded"
        assert doc["uploaded_by"] == str(actor)
        assert doc["storage_bucket"] == "local"
        assert doc["storage_key"]
        assert doc["on_chain_reference"]
        assert doc["token_id"] is None
        assert doc["metadata"] is None
        assert doc["verified_by"] is None
        assert doc["archived_by"] is None
        assert doc["archived_at"] is None
        assert doc["hash_verified_at"] is None
        assert doc["created_at"].endswith("+00:00")
        assert doc["updated_at"].endswith("+00:00")

    async def test_fields_sent_after_the_file_are_read(self, client: Client) -> None:
        """A form whose file part comes first is stored with the fields that follow it."""
        entity = uuid4()
        doc = await uploaded(
            client, entity_id=entity, file_first=True, entity_type="deal", token_id="7"
        )
        assert doc["entity_id"] == str(entity)
        assert doc["entity_type"] == "deal"
        assert doc["token_id"] == 7

    async def test_token_id_is_parsed_as_an_integer(self, client: Client) -> None:
        """``token_id`` arrives as a form string and is answered as a JSON integer."""
        doc = await uploaded(client, token_id="42")
        assert doc["token_id"] == 42

    async def test_metadata_object_is_kept(self, client: Client) -> None:
        """A JSON object in ``metadata`` is stored and answered as that object."""
        metadata = {"description": "Q3 report", "tags": ["audit", "2025"], "extra": {"pages": 3}}
        doc = await uploaded(client, metadata=json.dumps(metadata))
        assert doc["metadata"] == metadata

    async def test_uploaded_by_naming_the_actor_is_accepted(
        self, client: Client
    ) -> None:
        """``uploaded_by`` equal to the requesting actor is allowed and recorded."""
        actor = uuid4()
        doc = await uploaded(
            client, headers=actor_headers(Role.ADMIN, actor), uploaded_by=str(actor)
        )
        assert doc["uploaded_by"] == str(actor)

    @pytest.mark.parametrize(
        ("sent", "kept"),
        [
            ("../../etc/report.pdf", "report.pdf"),
            ("C:\\Users\\ana\\Desktop\\scan.pdf", "scan.pdf"),
            ("re\x01po\x7frt\x1f.pdf", "report.pdf"),
            ("contrat signé.pdf", "contrat signé.pdf"),
        ],
    )
    async def test_filename_loses_path_and_control_characters(
        self, client: Client, sent: str, kept: str
    ) -> None:
        """The stored filename is the sent one minus any path and control characters."""
        doc = await uploaded(client, filename=sent)
        assert doc["filename"] == kept


class TestMetadata:
    @pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "42", "NaN"])
    async def test_metadata_that_is_not_a_json_object_is_400(
        self, client: Client, raw: str
    ) -> None:
        """Invalid JSON, or JSON that is not an object, answers 400 INVALID_METADATA."""
        response = await post_upload(client, metadata=raw)
        await problem(response, 400, "INVALID_METADATA")

    async def test_refused_metadata_stores_nothing(self, client: Client) -> None:
        """An upload refused for its metadata leaves no document behind."""
        entity = uuid4()
        response = await post_upload(client, entity_id=entity, metadata="{")
        await problem(response, 400, "INVALID_METADATA")
        listing = await client.get(list_path(entity), headers=actor_headers(Role.ADMIN))
        assert (await listing.get_json())["documents"] == []


class TestContentChecks:
    async def test_empty_file_is_400(self, client: Client) -> None:
        """A zero-byte file answers 400 EMPTY_FILE."""
        response = await post_upload(client, content=b"")
        await problem(response, 400, "EMPTY_FILE")

    async def test_type_not_allowed_is_400_with_allowed_types(
        self, client: Client
    ) -> None:
        """A declared type outside ALLOWED_MIME_TYPES answers 400 INVALID_FILE_TYPE listing them."""
        response = await post_upload(client, content=b"PK\x03\x04zip", mime="application/zip")
        body = await problem(response, 400, "INVALID_FILE_TYPE")
        assert body["allowed_types"] == list(DEFAULT_ALLOWED_MIME_TYPES)

    async def test_bytes_unlike_the_declared_type_are_400(
        self, client: Client
    ) -> None:
        """PNG bytes declared as a PDF answer 400 INVALID_FILE_TYPE."""
        response = await post_upload(client, content=PNG, mime="application/pdf")
        body = await problem(response, 400, "INVALID_FILE_TYPE")
        assert body["allowed_types"] == list(DEFAULT_ALLOWED_MIME_TYPES)

    async def test_text_that_is_not_utf8_is_400(self, client: Client) -> None:
        """A text/plain file with invalid UTF-8 answers 400 INVALID_FILE_TYPE."""
        response = await post_upload(
            client, content=b"caf\xe9 au lait\n", mime="text/plain", filename="notes.txt"
        )
        await problem(response, 400, "INVALID_FILE_TYPE")

    async def test_utf8_text_is_accepted(self, client: Client) -> None:
        """A text/plain file of valid UTF-8 is stored with that type."""
        doc = await uploaded(
            client, content="café au lait\n".encode(), mime="text/plain", filename="notes.txt"
        )
        assert doc["mime_type"] == "text/plain"

    async def test_png_declared_as_png_is_accepted(self, client: Client) -> None:
        """Bytes that agree with their declared image type are stored."""
        doc = await uploaded(client, content=PNG, mime="image/png", filename="scan.png")
        assert doc["mime_type"] == "image/png"

    async def test_refused_content_stores_nothing(self, client: Client) -> None:
        """An upload refused for its content leaves no document behind."""
        entity = uuid4()
        response = await post_upload(client, entity_id=entity, content=PNG)
        await problem(response, 400, "INVALID_FILE_TYPE")
        listing = await client.get(list_path(entity), headers=actor_headers(Role.ADMIN))
        assert (await listing.get_json())["documents"] == []


LIMIT = 1024


class TestSizeLimit:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", max_upload_file_size_bytes=LIMIT)

    async def test_file_over_the_limit_is_413(self, client: Client) -> None:
        """A file one byte over MAX_UPLOAD_FILE_SIZE_BYTES answers 413 with the limit."""
        response = await post_upload(client, content=pdf_bytes(LIMIT + 1))
        body = await problem(response, 413, "FILE_SIZE_EXCEEDED")
        assert body["max_size_bytes"] == LIMIT

    async def test_file_at_the_limit_is_accepted(self, client: Client) -> None:
        """A file of exactly MAX_UPLOAD_FILE_SIZE_BYTES is stored."""
        doc = await uploaded(client, content=pdf_bytes(LIMIT))
        assert doc["size_bytes"] == LIMIT

    async def test_declared_length_over_the_limit_is_413_before_the_body(
        self, client: Client, vault: Vault
    ) -> None:
        """A Content-Length beyond the limit plus 64 KiB answers 413 with no body byte sent."""
        _, content_type = multipart_body(upload_fields(uuid4()), None)
        headers = {
            **actor_headers(Role.ISSUER),
            "Content-Type": content_type,
            "Content-Length": str(LIMIT + FORM_ROOM + 1),
        }
        async with client.request(UPLOAD, method="POST", headers=headers) as connection:
            response = await connection.as_response()
        body = await problem(response, 413, "FILE_SIZE_EXCEEDED")
        assert body["max_size_bytes"] == LIMIT
        assert vault.upload.health.processed == 0
        assert vault.upload.health.failed == 0

    async def test_body_without_length_is_413_before_its_end(
        self, client: Client, vault: Vault
    ) -> None:
        """A body of unknown length is answered 413 once its file crosses the limit, unfinished."""
        content = pdf_bytes(3 << 20)
        body, content_type = multipart_body(
            upload_fields(uuid4()), ("big.pdf", content, "application/pdf")
        )
        headers = {**actor_headers(Role.ISSUER), "Content-Type": content_type}
        cut = (1 << 20) + 100_000
        async with client.request(UPLOAD, method="POST", headers=headers) as connection:
            await connection.send(body[:cut])
            await eventually(lambda: vault.upload.health.processed == 1,
                             "the upload actor to be done with the refused upload")
            await connection.send(body[cut : cut + 1000])
            with trio.fail_after(5):
                answer = await connection.receive()
            # The answer is out while the body is still open; the rest of the
            # body is read and dropped until the client ends it.
            await connection.send(body[cut + 1000 :])
            await connection.send_complete()
        assert connection.status_code == 413
        assert connection.headers is not None
        assert connection.headers["Content-Type"] == "application/problem+json"
        problem_body = json.loads(answer)
        assert problem_body["error_code"] == "FILE_SIZE_EXCEEDED"
        assert problem_body["max_size_bytes"] == LIMIT


class TestDuplicates:
    async def test_same_bytes_for_the_same_entity_are_409(
        self, client: Client
    ) -> None:
        """The same content twice for one entity answers 409 naming the first document."""
        entity, content = uuid4(), pdf_bytes()
        first = await uploaded(client, entity_id=entity, content=content)
        response = await post_upload(client, entity_id=entity, content=content)
        body = await problem(response, 409, "DUPLICATE_DOCUMENT")
        assert body["existing_document_id"] == first["id"]

    async def test_same_bytes_for_another_entity_are_accepted(
        self, client: Client
    ) -> None:
        """Duplicate detection is per entity: another entity may store the same bytes."""
        content = pdf_bytes()
        first = await uploaded(client, content=content)
        second = await uploaded(client, content=content)
        assert second["sha256_hash"] == first["sha256_hash"]
        assert second["id"] != first["id"]

    async def test_bytes_of_an_archived_document_may_be_uploaded_again(
        self, client: Client
    ) -> None:
        """Once the stored copy is archived, the same bytes are accepted again."""
        entity, content = uuid4(), pdf_bytes()
        first = await uploaded(client, entity_id=entity, content=content)
        archived = await client.delete(archive_path(first["id"]), headers=actor_headers(Role.ADMIN))
        assert archived.status_code == 200
        second = await uploaded(client, entity_id=entity, content=content)
        assert second["id"] != first["id"]


class TestDuplicateDetectionOff:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return test_settings(tmp_path / "data", enable_duplicate_hash_detection=False)

    async def test_same_bytes_for_the_same_entity_are_accepted(
        self, client: Client
    ) -> None:
        """With ENABLE_DUPLICATE_HASH_DETECTION=false the same bytes are stored twice."""
        entity, content = uuid4(), pdf_bytes()
        first = await uploaded(client, entity_id=entity, content=content)
        second = await uploaded(client, entity_id=entity, content=content)
        assert second["id"] != first["id"]
        assert second["sha256_hash"] == first["sha256_hash"]


def _without(entity: UUID, name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in upload_fields(entity) if k != name]


class TestValidation:
    @pytest.mark.parametrize("missing", ["entity_id", "entity_type", "document_type"])
    async def test_missing_field_is_422(self, client: Client, missing: str) -> None:
        """A form without a required field answers 422 naming that field."""
        response = await post_upload(client, fields=_without(uuid4(), missing))
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", missing] in [error["loc"] for error in body["errors"]]

    async def test_missing_file_is_422(self, client: Client) -> None:
        """A form without a file part answers 422 naming ``file``."""
        response = await post_upload(client, with_file=False)
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", "file"] in [error["loc"] for error in body["errors"]]

    async def test_entity_id_that_is_not_a_uuid_is_422(self, client: Client) -> None:
        """A malformed ``entity_id`` answers 422 naming it."""
        fields = [("entity_id", "not-a-uuid"), ("entity_type", "issuer"), ("document_type", "kyc")]
        response = await post_upload(client, fields=fields)
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", "entity_id"] in [error["loc"] for error in body["errors"]]

    @pytest.mark.parametrize(
        ("name", "value"),
        [("entity_type", "planet"), ("document_type", "poem"), ("token_id", "seven")],
    )
    async def test_unknown_enum_or_bad_integer_is_422(
        self, client: Client, name: str, value: str
    ) -> None:
        """An unknown entity or document type, or a non-integer token id, answers 422."""
        fields = [(k, value if k == name else v) for k, v in upload_fields(uuid4())]
        if name not in dict(fields):
            fields.append((name, value))
        response = await post_upload(client, fields=fields)
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", name] in [error["loc"] for error in body["errors"]]

    async def test_body_that_is_not_multipart_is_422(self, client: Client) -> None:
        """A JSON body sent to the upload route answers 422."""
        response = await client.post(
            UPLOAD, data=b"{}", headers={**actor_headers(), "Content-Type": "application/json"}
        )
        await problem(response, 422, "VALIDATION_ERROR")


class TestPermission:
    async def test_uploaded_by_naming_someone_else_is_403(
        self, client: Client
    ) -> None:
        """``uploaded_by`` that differs from the requesting actor answers 403."""
        response = await post_upload(client, uploaded_by=str(uuid4()))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_role_without_upload_is_403(self, client: Client) -> None:
        """An investor may not upload: 403."""
        response = await post_upload(client, headers=actor_headers(Role.INVESTOR))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")


class TestPrecedence:
    @pytest.mark.parametrize("file_first", [False, True], ids=["fields_first", "file_first"])
    async def test_invalid_form_with_empty_file_is_422(
        self, client: Client, file_first: bool
    ) -> None:
        """A form that is both invalid and carries an empty file answers 422, not 400."""
        response = await post_upload(
            client, fields=_without(uuid4(), "entity_id"), content=b"", file_first=file_first
        )
        await problem(response, 422, "VALIDATION_ERROR")

    @pytest.mark.parametrize("file_first", [False, True], ids=["fields_first", "file_first"])
    async def test_forbidden_role_with_empty_file_is_403(
        self, client: Client, file_first: bool
    ) -> None:
        """An investor sending an empty file answers 403, not 400."""
        response = await post_upload(
            client, headers=actor_headers(Role.INVESTOR), content=b"", file_first=file_first
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_no_identity_with_invalid_form_is_401(self, client: Client) -> None:
        """No identity and an invalid form answers 401, not 422."""
        response = await post_upload(client, headers={}, fields=_without(uuid4(), "entity_id"))
        await problem(response, 401, "UNAUTHENTICATED")

    async def test_forbidden_role_with_wrong_type_is_403(self, client: Client) -> None:
        """An investor sending bytes unlike their declared type answers 403, not 400."""
        response = await post_upload(client, headers=actor_headers(Role.INVESTOR), content=PNG)
        await problem(response, 403, "UNAUTHORIZED_ACCESS")

    async def test_forbidden_role_with_large_wrong_type_file_first_is_403(
        self, client: Client, vault: Vault
    ) -> None:
        """An investor's file-first form refused mid-stream for its type still answers 403."""
        content = PNG + bytes(3 << 20)
        body, content_type = multipart_body(
            upload_fields(uuid4()), ("scan.pdf", content, "application/pdf"), file_first=True
        )
        headers = {
            **actor_headers(Role.INVESTOR),
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
        }
        cut = (1 << 20) + 100_000
        async with client.request(UPLOAD, method="POST", headers=headers) as connection:
            await connection.send(body[:cut])
            await eventually(lambda: vault.upload.health.processed == 1,
                             "the upload actor to be done with the refused upload")
            await connection.send(body[cut:])
            await connection.send_complete()
            response = await connection.as_response()
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
