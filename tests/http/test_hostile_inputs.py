"""Regression tests for the 5xx answers hostile input once got, each fixed at its root.

Each test sends one input that used to end in a 500 (or a 503, or no answer)
and checks the 4xx it gets now, and that nothing of it was kept or broke.
The request body's own limits, which only the real server's ASGI connection
applies, are in ``tests/system/test_hostile.py``.
"""

from __future__ import annotations

import base64
import json
from uuid import uuid4

import pytest
import trio
from quart.wrappers import Response
from trio.testing import wait_all_tasks_blocked
from werkzeug.exceptions import RequestEntityTooLarge

from actors.system import Vault
from tests.http.helpers import (
    UPLOAD,
    VERIFY,
    Client,
    download_path,
    list_path,
    post_upload,
    problem,
    uploaded,
)
from tests.support import actor_headers, multipart_body, pdf_bytes, upload_fields
from vault.domain.models import Role
from vault_http.body import HIGH_WATER, SMALL_BODY_LIMIT, BoundedBody
from vault_http.multipart import MAX_PARTS

ADMIN = actor_headers(Role.ADMIN)
THOUSANDS_OF_DIGITS = "9" * 5000
"""Past Python's 4300-digit limit on ``int(str)``."""


def cursor(raw: bytes) -> str:
    """A cursor as the list route encodes one, around any bytes."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def post_json(client: Client, body: bytes) -> Response:
    headers = {**ADMIN, "Content-Type": "application/json"}
    return await client.post(VERIFY, data=body, headers=headers)


async def listed(client: Client, entity: object) -> list[dict[str, object]]:
    response = await client.get(
        list_path(str(entity)), headers=ADMIN, query_string={"include_archived": "true"}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    documents: list[dict[str, object]] = (await response.get_json())["documents"]
    return documents


class TestVerifyBody:
    @pytest.mark.parametrize(
        "body",
        [b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000],
        ids=["arrays", "objects"],
    )
    async def test_json_nested_thousands_deep_is_422(self, client: Client, body: bytes) -> None:
        """A body nested 20,000 deep (once a RecursionError, 500) answers 422 naming the body."""
        response = await post_json(client, body)
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["loc"] == ["body", "json"]
        assert "deeper than 32 levels" in answer["errors"][0]["msg"]

    @pytest.mark.parametrize("field", ["document_id", "verifier_id"])
    async def test_a_number_of_thousands_of_digits_is_422(
        self, client: Client, field: str
    ) -> None:
        """A 5000-digit number (once int()'s ValueError, 500) answers 422."""
        body = {"document_id": str(uuid4()), field: 0}
        raw = json.dumps(body).replace(": 0", ": " + THOUSANDS_OF_DIGITS).encode()
        answer = await problem(await post_json(client, raw), 422, "VALIDATION_ERROR")
        assert "integer is out of range" in answer["detail"]


class TestListCursor:
    async def test_cursor_decoding_to_deep_json_is_422(self, client: Client) -> None:
        """A cursor whose JSON nests 5000 deep (once a RecursionError, 500) answers 422."""
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"cursor": cursor(b"[" * 5000)}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["loc"] == ["query", "cursor"]

    @pytest.mark.parametrize(
        "instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
    )
    async def test_cursor_instant_beyond_utc_range_is_422(
        self, client: Client, instant: str
    ) -> None:
        """An instant that cannot be brought to UTC (once an OverflowError, 500) answers 422."""
        raw = json.dumps([instant, str(uuid4())]).encode()
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"cursor": cursor(raw)}
        )
        await problem(response, 422, "VALIDATION_ERROR")

    @pytest.mark.parametrize("document", ["5", "null", '["x"]', '{"a": 1}'])
    async def test_cursor_whose_id_is_not_a_string_is_422(
        self, client: Client, document: str
    ) -> None:
        """A cursor pair whose id is not a string (once an AttributeError, 500) answers 422."""
        raw = f'["2025-01-01T00:00:00+00:00", {document}]'.encode()
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"cursor": cursor(raw)}
        )
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_cursor_with_a_huge_number_is_422(self, client: Client) -> None:
        """A cursor holding a 5000-digit number answers 422."""
        raw = b"[" + THOUSANDS_OF_DIGITS.encode() + b', "x"]'
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"cursor": cursor(raw)}
        )
        await problem(response, 422, "VALIDATION_ERROR")


class TestMetadata:
    @pytest.mark.parametrize(
        "metadata", ['{"description": "\\ud800"}', '{"\\udfff": 1}', '{"tags": ["\\udc00"]}']
    )
    async def test_lone_surrogate_is_400_and_the_upload_actor_keeps_running(
        self, client: Client, vault: Vault, metadata: str
    ) -> None:
        """A lone surrogate (once a crash of the upload actor, 500) answers 400; no restart."""
        entity = uuid4()
        response = await post_upload(client, entity_id=entity, metadata=metadata)
        await problem(response, 400, "INVALID_METADATA")
        assert vault.upload.health.restarts == 0
        assert vault.upload.health.failed == 0
        assert await listed(client, entity) == []

    @pytest.mark.parametrize(
        "metadata",
        [
            '{"extra": {"deep": ' + "[" * 300 + "]" * 300 + "}}",
            '{"extra": {"n": ' + "9" * 4000 + "}}",
            '{"extra": {"n": 18446744073709551616}}',
        ],
        ids=["300-deep", "4000-digits", "2**64"],
    )
    async def test_what_no_answer_can_carry_is_400_and_is_not_stored(
        self, client: Client, metadata: str
    ) -> None:
        """Metadata once stored and then failing every answer (500 on upload and listing) is 400."""
        entity = uuid4()
        response = await post_upload(client, entity_id=entity, metadata=metadata)
        await problem(response, 400, "INVALID_METADATA")
        assert await listed(client, entity) == []

    async def test_a_number_too_large_for_a_double_is_400(self, client: Client) -> None:
        """``1e999`` (once stored as Infinity: null here, a 503 on PostgreSQL) answers 400."""
        response = await post_upload(client, metadata='{"extra": {"n": 1e999}}')
        await problem(response, 400, "INVALID_METADATA")

    async def test_a_nul_character_is_400(self, client: Client) -> None:
        """U+0000 (a 503 on PostgreSQL, whose jsonb refuses it) answers 400."""
        response = await post_upload(client, metadata='{"description": "a\\u0000b"}')
        body = await problem(response, 400, "INVALID_METADATA")
        assert "NUL" in body["detail"]

    async def test_metadata_at_the_limits_is_stored_and_answered(self, client: Client) -> None:
        """The largest integer and 32 levels of nesting are kept and listed back unchanged."""
        entity = uuid4()
        metadata = {"extra": {"n": 2**64 - 1, "deep": json.loads("[" * 30 + "]" * 30)}}
        doc = await uploaded(client, entity_id=entity, metadata=json.dumps(metadata))
        assert doc["metadata"] == metadata
        assert [d["metadata"] for d in await listed(client, entity)] == [metadata]


class TestMultipart:
    @pytest.mark.parametrize("length", [71, 257, 5000])
    async def test_boundary_longer_than_rfc_2046_allows_is_422(
        self, client: Client, length: int
    ) -> None:
        """A boundary over 70 characters (over 256 once made the parser raise, 500) is 422."""
        boundary = "b" * length
        body, content_type = multipart_body(
            upload_fields(uuid4()), ("a.pdf", pdf_bytes(), "application/pdf"), boundary=boundary
        )
        response = await client.post(
            UPLOAD, data=body, headers={**ADMIN, "Content-Type": content_type}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["loc"] == ["header", "content-type"]

    async def test_a_boundary_of_70_characters_is_accepted(self, client: Client) -> None:
        """RFC 2046's longest boundary still works."""
        body, content_type = multipart_body(
            upload_fields(uuid4()), ("a.pdf", pdf_bytes(), "application/pdf"), boundary="b" * 70
        )
        response = await client.post(
            UPLOAD, data=body, headers={**ADMIN, "Content-Type": content_type}
        )
        assert response.status_code == 201, await response.get_data(as_text=True)

    @pytest.mark.parametrize("charset", ["idna", "punycode", "undefined", "unicode_escape"])
    async def test_filename_in_a_charset_that_is_no_text_encoding_is_kept_as_utf8(
        self, client: Client, charset: str
    ) -> None:
        """``filename*`` naming a codec that fails (idna, punycode, undefined: once a 500) or
        invents characters (unicode_escape) is read as UTF-8."""
        boundary = "hostileBoundary"
        fields = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            .encode()
            for name, value in upload_fields(uuid4())
        )
        file_part = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename*={charset}''%E2%82%AC%ED%A0%80.pdf\r\n"
            "Content-Type: application/pdf\r\n\r\n"
        ).encode() + pdf_bytes() + f"\r\n--{boundary}--\r\n".encode()
        response = await client.post(
            UPLOAD, data=fields + file_part,
            headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 201, await response.get_data(as_text=True)
        assert (await response.get_json())["filename"] == "\u20ac\ufffd\ufffd\ufffd.pdf"

    async def test_more_parts_than_a_form_has_room_for_is_422(self, client: Client) -> None:
        """Thousands of tiny parts are refused once past ``MAX_PARTS``, before the file."""
        fields = [(f"x{i}", "") for i in range(MAX_PARTS)] + upload_fields(uuid4())
        body, content_type = multipart_body(fields, ("a.pdf", pdf_bytes(), "application/pdf"))
        response = await client.post(
            UPLOAD, data=body, headers={**ADMIN, "Content-Type": content_type}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert f"more than {MAX_PARTS} parts" in answer["detail"]

    async def test_a_part_header_over_the_parsers_limit_is_422(self, client: Client) -> None:
        """A ``Content-Disposition`` of 8 KiB is refused as malformed multipart."""
        body, content_type = multipart_body(
            upload_fields(uuid4()), ("a" * 8192 + ".pdf", pdf_bytes(), "application/pdf"),
        )
        response = await client.post(
            UPLOAD, data=body, headers={**ADMIN, "Content-Type": content_type}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["loc"] == ["body", "multipart"]

    async def test_a_character_split_between_two_chunks_stays_one(self, client: Client) -> None:
        """A field whose UTF-8 is cut between body chunks is decoded whole, not as U+FFFD."""
        description = "Gr\u00fc\u00dfe \u20ac"
        body, content_type = multipart_body(
            [*upload_fields(uuid4()), ("metadata", json.dumps({"description": description},
                                                              ensure_ascii=False))],
            ("a.pdf", pdf_bytes(), "application/pdf"),
        )
        cut = body.index("\u20ac".encode()) + 1
        headers = {**ADMIN, "Content-Type": content_type}
        async with client.request(UPLOAD, method="POST", headers=headers) as connection:
            await connection.send(body[:cut])
            await wait_all_tasks_blocked()
            await connection.send(body[cut:])
            await connection.send_complete()
            response = await connection.as_response()
        assert response.status_code == 201, await response.get_data(as_text=True)
        assert (await response.get_json())["metadata"] == {"description": description}


class TestIntegers:
    @pytest.mark.parametrize("limit", [THOUSANDS_OF_DIGITS, "-" + THOUSANDS_OF_DIGITS])
    async def test_limit_of_thousands_of_digits_is_out_of_range(
        self, client: Client, limit: str
    ) -> None:
        """A 5000-digit ``limit`` is an integer outside 1 to 1000: 422 naming the range."""
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"limit": limit}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["msg"] == "must be between 1 and 1000"

    @pytest.mark.parametrize("limit", ["\u0661\u0660", "1_0", " 10", "0x10", "+"])
    async def test_limit_that_is_not_ascii_decimal_is_422(
        self, client: Client, limit: str
    ) -> None:
        """Arabic-Indic digits, underscores, blanks and hex (int() took some) are not integers."""
        response = await client.get(
            list_path(uuid4()), headers=ADMIN, query_string={"limit": limit}
        )
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert answer["errors"][0]["msg"] == "must be an integer"

    async def test_expires_in_of_thousands_of_digits_is_400(self, client: Client) -> None:
        """A 5000-digit ``expires_in`` is an expiry above 3600: 400 INVALID_SIGNED_URL_EXPIRY."""
        doc = await uploaded(client)
        response = await client.get(
            download_path(doc["id"]), headers=ADMIN,
            query_string={"expires_in": THOUSANDS_OF_DIGITS},
        )
        await problem(response, 400, "INVALID_SIGNED_URL_EXPIRY")

    @pytest.mark.parametrize("token_id", [THOUSANDS_OF_DIGITS, "\u0661"])
    async def test_token_id_of_thousands_of_digits_or_other_digits_is_422(
        self, client: Client, token_id: str
    ) -> None:
        """A 5000-digit or non-ASCII ``token_id`` answers 422 naming it."""
        response = await post_upload(client, token_id=token_id)
        answer = await problem(response, 422, "VALIDATION_ERROR")
        assert ["body", "token_id"] in [error["loc"] for error in answer["errors"]]


class TestAwaitedBody:
    async def test_reaching_exactly_the_limit_with_more_to_come_does_not_hang(self) -> None:
        """A JSON body that fills exactly the limit and goes on (once a hang) trips the limit."""
        body = BoundedBody(None, SMALL_BODY_LIMIT)
        chunk = b"x" * (64 * 1024)
        with trio.fail_after(5):
            for _ in range(SMALL_BODY_LIMIT // len(chunk) + 1):
                await body.put(chunk)
        with pytest.raises(RequestEntityTooLarge):
            await body

    async def test_a_streamed_body_still_waits_at_the_mark(self) -> None:
        """The upload's body (no limit) still holds the sender back at the mark until drained."""
        body = BoundedBody(None, None)
        await body.put(b"x" * HIGH_WATER)
        sent = trio.Event()

        async def send_more() -> None:
            await body.put(b"more")
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_more)
            await wait_all_tasks_blocked()
            assert not sent.is_set()
            assert len(await body.__anext__()) == HIGH_WATER
            with trio.fail_after(5):
                await sent.wait()
