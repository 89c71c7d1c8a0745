"""Hostile requests a schema-driven fuzzer cannot express, against the real server.

Malformed multipart, JSON nested thousands deep in every JSON input,
numbers of thousands of digits, lone surrogates, request heads at and past
hypercorn's limits, bodies past the 1 MiB limit of the JSON route. Each
gets a 4xx problem answer from the service, or, for the transport's own
limits, hypercorn's bare 4xx and a closed connection; after each the
server answers ``GET /healthz`` with 200. Requests go out as raw bytes over
a socket, exactly as written, so nothing on the client side tidies them up.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import pytest

from tests.system.service import Server, actor, launch, pdf

pytestmark = pytest.mark.system

ADMIN = actor("admin")
BOUNDARY = "hostileBoundary42"
UPLOAD = "/api/v1/documents/upload"
VERIFY = "/api/v1/documents/verify"
ONE_MIB = 1 << 20
H11_HEAD_LIMIT = 16 * 1024
"""hypercorn's ``h11_max_incomplete_size``: a request head still incomplete past this is 431."""
THOUSANDS = "9" * 5000
SOCKET_TIMEOUT = 30.0
LOG_EVENTS_THAT_FAIL = ("unhandled_error", "actor_crashed", "actor_failed")


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server closed the connection after answering."""

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for every hostile request; it must log no unhandled error and stop with 0."""
    folder = tmp_path_factory.mktemp("hostile")
    running = launch(folder / "data", folder / "server.log", {})
    try:
        yield running
        trouble = [line for line in running.log_lines()
                   if line.get("event") in LOG_EVENTS_THAT_FAIL]
        assert trouble == [], trouble[:3]
    finally:
        code = running.stop()
    assert code == 0, running.log_tail()


def exchange(server: Server, *pieces: bytes) -> Answer:
    """Send ``pieces`` (each its own write) on a new connection; read one answer to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed; the answer is still there to read
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer's body"
        body += chunk
    closed = headers.get("connection", "").lower() == "close" or _closed(sock)
    return Answer(int(status_line.split(" ")[1]), headers, body[:length], closed)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def request(
    method: str, target: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
    content_type: str | None = None, chunked: bool = False,
) -> bytes:
    """A complete HTTP/1.1 request as bytes; ``Connection: close`` so one answer ends it."""
    lines = [f"{method} {target} HTTP/1.1", "Host: vault.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        framed = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        framed = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + framed


def field(name: str, value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + raw + b"\r\n"
    )


def file_part(content: bytes, disposition: bytes = b'; filename="a.pdf"') -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"'.encode() + disposition
        + b"\r\nContent-Type: application/pdf\r\n\r\n" + content + b"\r\n"
    )


def form(entity: uuid.UUID, **overrides: bytes | str) -> bytes:
    values: dict[str, bytes | str] = {
        "entity_id": str(entity), "entity_type": "issuer", "document_type": "kyc", **overrides
    }
    return b"".join(field(name, value) for name, value in values.items())


END = f"--{BOUNDARY}--\r\n".encode()
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def upload(server: Server, body: bytes, content_type: str = MULTIPART, **kw: Any) -> Answer:
    return exchange(server, request("POST", UPLOAD, headers=ADMIN, body=body,
                                    content_type=content_type, **kw))


def assert_problem(answer: Answer, status: int, error_code: str) -> dict[str, Any]:
    """A problem+json answer with this status and code, and its body."""
    assert answer.status == status, answer.body[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    assert (problem["status"], problem["error_code"]) == (status, error_code)
    assert {"type", "title", "detail"} <= problem.keys()
    return problem


def assert_still_serving(server: Server) -> None:
    """``GET /healthz`` answers 200 on a new connection."""
    answer = exchange(server, request("GET", "/healthz"))
    assert answer.status == 200, answer.body
    assert answer.json()["status"] == "ok"


def listed(server: Server, entity: uuid.UUID) -> list[dict[str, Any]]:
    answer = exchange(server, request(
        "GET", f"/api/v1/documents/{entity}?include_archived=true", headers=ADMIN
    ))
    assert answer.status == 200, answer.body
    documents: list[dict[str, Any]] = answer.json()["documents"]
    return documents


def cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class TestMultipart:
    @pytest.mark.parametrize(
        ("content_type", "why"),
        [
            ("multipart/form-data", "boundary missing"),
            ('multipart/form-data; boundary=""', "boundary missing"),
            ("multipart/form-data; boundary=" + "b" * 71, "1 to 70 characters"),
            ("multipart/form-data; boundary=" + "b" * 5000, "1 to 70 characters"),
            ("multipart/form-data; boundary=\"a\x7fb\"", "1 to 70 characters"),
            ("application/json", "expected multipart/form-data"),
        ],
        ids=["no-boundary", "empty", "71-chars", "5000-chars", "control-char", "json"],
    )
    def test_a_content_type_without_a_usable_boundary_is_422(
        self, server: Server, content_type: str, why: str
    ) -> None:
        """No boundary, an empty, overlong or odd one, or no multipart at all: 422 on the header."""
        answer = upload(server, form(uuid.uuid4()) + file_part(pdf(64)) + END, content_type)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["header", "content-type"]
        assert why in problem["errors"][0]["msg"]
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "part",
        [
            b"Content-Disposition form-data; name=\"entity_id\"\r\n",
            b"Content-\x00Disposition: form-data; name=\"entity_id\"\r\n",
            b": form-data; name=\"entity_id\"\r\n",
            b"Content-Type: text/plain\r\n",
            b"Content-Disposition: form-data\r\n",
            b"Content-Disposition: form-data; name=\"entity_id\"\r\n" + b"X-Pad: v\r\n" * 20,
            b"Content-Disposition: form-data; name=\"" + b"n" * 5000 + b"\"\r\n",
        ],
        ids=["no-colon", "nul-in-name", "no-name", "no-disposition", "disposition-unnamed",
             "20-headers", "5000-byte-header"],
    )
    def test_a_part_with_broken_headers_is_422(self, server: Server, part: bytes) -> None:
        """A part header that does not parse, or names no field, is 422 on the body."""
        entity = uuid.uuid4()
        body = f"--{BOUNDARY}\r\n".encode() + part + b"\r\nvalue\r\n" + form(entity)
        answer = upload(server, body + file_part(pdf(64)) + END)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["body", "multipart"]
        assert listed(server, entity) == []
        assert_still_serving(server)

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_a_boundary_that_never_ends_is_422_and_stores_nothing(
        self, server: Server, chunked: bool
    ) -> None:
        """A body that stops inside the file, before the final boundary, is 422; nothing kept."""
        entity = uuid.uuid4()
        answer = upload(server, form(entity) + file_part(pdf(4096))[:-2], chunked=chunked)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert "before the final boundary" in problem["detail"]
        assert listed(server, entity) == []
        assert_still_serving(server)

    def test_thousands_of_tiny_parts_are_422(self, server: Server) -> None:
        """Ten thousand empty parts are refused at the 65th, before the file."""
        entity = uuid.uuid4()
        tiny = b"".join(field(f"x{i}", b"") for i in range(10_000))
        answer = upload(server, tiny + form(entity) + file_part(pdf(64)) + END)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert "more than 64 parts" in problem["detail"]
        assert listed(server, entity) == []
        assert_still_serving(server)

    def test_a_file_before_an_invalid_form_is_422_after_the_file(self, server: Server) -> None:
        """The file first, then a malformed entity id: 422 once the body is read, nothing kept."""
        entity = uuid.uuid4()
        body = file_part(pdf(200_000)) + form(entity, entity_id="not-a-uuid") + END
        problem = assert_problem(upload(server, body), 422, "VALIDATION_ERROR")
        assert ["body", "entity_id"] in [error["loc"] for error in problem["errors"]]
        assert_still_serving(server)

    def test_an_invalid_form_before_the_file_is_422_before_the_file(self, server: Server) -> None:
        """Fields first with an unknown entity type: 422, decided before the file's bytes."""
        entity = uuid.uuid4()
        body = form(entity, entity_type="planet") + file_part(pdf(200_000)) + END
        problem = assert_problem(upload(server, body), 422, "VALIDATION_ERROR")
        assert ["body", "entity_type"] in [error["loc"] for error in problem["errors"]]
        assert listed(server, entity) == []
        assert_still_serving(server)

    @pytest.mark.parametrize("file_first", [False, True], ids=["file-last", "file-first"])
    def test_a_valid_form_in_either_order_is_stored(
        self, server: Server, file_first: bool
    ) -> None:
        """The same form with the file before or after the fields is stored (the control case)."""
        entity = uuid.uuid4()
        parts = [form(entity), file_part(pdf(1024))]
        body = b"".join(reversed(parts) if file_first else parts) + END
        answer = upload(server, body)
        assert answer.status == 201, answer.body
        assert [d["id"] for d in listed(server, entity)] == [answer.json()["id"]]
        assert_still_serving(server)


class TestDeepJson:
    @pytest.mark.parametrize("depth", [33, 5_000, 100_000])
    def test_the_verify_body_nested_deep_is_422(self, server: Server, depth: int) -> None:
        """The verify body nested past 32 levels, up to 100,000, is 422 naming the body."""
        answer = exchange(server, request("POST", VERIFY, headers=ADMIN, body=deep(depth),
                                          content_type="application/json"))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["body", "json"]
        assert_still_serving(server)

    @pytest.mark.parametrize("depth", [300, 5_000])
    def test_metadata_nested_deep_is_400(self, server: Server, depth: int) -> None:
        """The ``metadata`` field nested 300 or 5000 deep is 400 INVALID_METADATA; nothing kept."""
        entity = uuid.uuid4()
        metadata = b'{"extra": {"deep": ' + deep(depth) + b"}}"
        answer = upload(server, form(entity, metadata=metadata) + file_part(pdf(64)) + END)
        assert_problem(answer, 400, "INVALID_METADATA")
        assert listed(server, entity) == []
        assert_still_serving(server)

    def test_metadata_nested_past_the_form_room_is_422(self, server: Server) -> None:
        """Metadata nested 40,000 deep (80 KB) is over the 64 KiB the fields share: 422."""
        body = form(uuid.uuid4(), metadata=deep(40_000)) + file_part(pdf(64)) + END
        answer = upload(server, body)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert "form fields too large" in problem["detail"]
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "raw", [deep(5_000), b'{"a":' * 2_000 + b"1" + b"}" * 2_000, b"[" * 10_000],
        ids=["arrays", "objects", "unclosed"],
    )
    def test_a_cursor_decoding_to_deep_json_is_422(self, server: Server, raw: bytes) -> None:
        """A list cursor whose JSON nests thousands deep is 422 naming the cursor."""
        answer = exchange(server, request(
            "GET", f"/api/v1/documents/{uuid.uuid4()}?cursor={cursor(raw)}", headers=ADMIN
        ))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["query", "cursor"]
        assert_still_serving(server)

    def test_a_blob_token_with_deep_claims_is_403(self, server: Server) -> None:
        """A forged download token whose claims nest 2000 deep is refused as altered: 403."""
        token = f"{cursor(deep(2_000))}.{cursor(b'x' * 32)}"
        answer = exchange(server, request("GET", f"/api/v1/blobs/{token}"))
        problem = assert_problem(answer, 403, "UNAUTHORIZED_ACCESS")
        assert problem["detail"] == "Download URL tampered"
        assert_still_serving(server)


class TestHugeNumbers:
    def test_token_id_of_thousands_of_digits_is_422(self, server: Server) -> None:
        """A 5000-digit ``token_id`` is 422 naming it."""
        entity = uuid.uuid4()
        answer = upload(server, form(entity, token_id=THOUSANDS) + file_part(pdf(64)) + END)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert ["body", "token_id"] in [error["loc"] for error in problem["errors"]]
        assert_still_serving(server)

    @pytest.mark.parametrize("limit", [THOUSANDS, "-" + THOUSANDS])
    def test_limit_of_thousands_of_digits_is_422(self, server: Server, limit: str) -> None:
        """A 5000-digit ``limit`` is 422: outside 1 to 1000."""
        answer = exchange(server, request(
            "GET", f"/api/v1/documents/{uuid.uuid4()}?limit={limit}", headers=ADMIN
        ))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0] == {"loc": ["query", "limit"],
                                        "msg": "must be between 1 and 1000"}
        assert_still_serving(server)

    def test_expires_in_of_thousands_of_digits_is_400(self, server: Server) -> None:
        """A 5000-digit ``expires_in`` is 400 INVALID_SIGNED_URL_EXPIRY."""
        entity = uuid.uuid4()
        created = upload(server, form(entity) + file_part(pdf(64)) + END)
        assert created.status == 201, created.body
        answer = exchange(server, request(
            "GET", f"/api/v1/documents/{created.json()['id']}/download?expires_in={THOUSANDS}",
            headers=ADMIN,
        ))
        assert_problem(answer, 400, "INVALID_SIGNED_URL_EXPIRY")
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "body",
        [b'{"document_id": ' + THOUSANDS.encode() + b"}",
         b'{"document_id": "00000000-0000-0000-0000-000000000000", "verifier_id": -'
         + THOUSANDS.encode() + b"}",
         b'{"document_id": 1e99999}'],
        ids=["document-id", "verifier-id", "exponent"],
    )
    def test_json_numbers_of_thousands_of_digits_are_422(
        self, server: Server, body: bytes
    ) -> None:
        """Numbers of thousands of digits in the verify body are 422."""
        answer = exchange(server, request("POST", VERIFY, headers=ADMIN, body=body,
                                          content_type="application/json"))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert "out of range" in problem["detail"]
        assert_still_serving(server)

    @pytest.mark.parametrize("number", [THOUSANDS, "9" * 4000, "18446744073709551616", "1e999"])
    def test_metadata_numbers_out_of_range_are_400(self, server: Server, number: str) -> None:
        """Metadata numbers past 64 bits or a double's range are 400; nothing kept."""
        entity = uuid.uuid4()
        metadata = '{"extra": {"n": ' + number + "}}"
        answer = upload(server, form(entity, metadata=metadata) + file_part(pdf(64)) + END)
        assert_problem(answer, 400, "INVALID_METADATA")
        assert listed(server, entity) == []
        assert_still_serving(server)

    def test_a_cursor_holding_thousands_of_digits_is_422(self, server: Server) -> None:
        """A cursor whose JSON is a 5000-digit number is 422."""
        raw = b"[" + THOUSANDS.encode() + b', "x"]'
        answer = exchange(server, request(
            "GET", f"/api/v1/documents/{uuid.uuid4()}?cursor={cursor(raw)}", headers=ADMIN
        ))
        assert_problem(answer, 422, "VALIDATION_ERROR")
        assert_still_serving(server)


class TestLoneSurrogates:
    @pytest.mark.parametrize(
        "body",
        [b'{"document_id": "\\ud800"}', b'{"\\udfff": 1, "document_id": "x"}',
         b'{"document_id": "00000000-0000-0000-0000-000000000000", "verifier_id": "\\udc00"}',
         b'{"document_id": "\xed\xa0\x80"}'],
        ids=["value", "key", "actor-field", "encoded-bytes"],
    )
    def test_in_the_verify_body_is_422(self, server: Server, body: bytes) -> None:
        """A lone surrogate, as an escape or as its (invalid) UTF-8 bytes, is 422."""
        answer = exchange(server, request("POST", VERIFY, headers=ADMIN, body=body,
                                          content_type="application/json"))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["body", "json"]
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "metadata",
        [b'{"description": "\\ud800"}', b'{"\\udfff": "k"}', b'{"tags": ["\\udbff"]}',
         b'{"description": "\xed\xa0\x80"}', b'{"description": "\xff"}'],
        ids=["value", "key", "tag", "encoded-bytes", "not-utf8"],
    )
    def test_in_metadata_is_400_and_the_upload_actor_keeps_running(
        self, server: Server, metadata: bytes
    ) -> None:
        """A lone surrogate, or bytes that are not UTF-8, in ``metadata``: 400, no restart."""
        entity = uuid.uuid4()
        answer = upload(server, form(entity, metadata=metadata) + file_part(pdf(64)) + END)
        assert_problem(answer, 400, "INVALID_METADATA")
        assert listed(server, entity) == []
        assert server.actor_health("upload")["restarts"] == 0
        assert_still_serving(server)

    @pytest.mark.parametrize("name", ["entity_id", "entity_type", "document_type", "token_id"])
    def test_in_a_form_field_is_422(self, server: Server, name: str) -> None:
        """Surrogate bytes in a typed form field are 422 naming the field."""
        answer = upload(server, form(uuid.uuid4(), **{name: b"\xed\xa0\x80"})
                        + file_part(pdf(64)) + END)
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert ["body", name] in [error["loc"] for error in problem["errors"]]
        assert_still_serving(server)

    def test_as_the_uploaded_by_field_without_a_header_is_401(self, server: Server) -> None:
        """The actor field as surrogate bytes, with no identity header, names no actor: 401."""
        body = form(uuid.uuid4(), uploaded_by=b"\xed\xa0\x80") + file_part(pdf(64)) + END
        answer = exchange(server, request("POST", UPLOAD, headers={"X-Actor-Role": "admin"},
                                          body=body, content_type=MULTIPART))
        assert_problem(answer, 401, "UNAUTHENTICATED")
        assert_still_serving(server)

    @pytest.mark.parametrize(
        ("disposition", "kept"),
        [(b'; filename="\xed\xa0\x80.pdf"', "\ufffd\ufffd\ufffd.pdf"),
         (b"; filename*=utf-8''%ED%A0%80.pdf", "\ufffd\ufffd\ufffd.pdf"),
         (b"; filename*=idna''%ED%A0%80.pdf", "\ufffd\ufffd\ufffd.pdf"),
         (b'; filename="\\ud800.pdf"', "ud800.pdf")],
        ids=["raw-bytes", "rfc2231-utf8", "rfc2231-idna", "escape-text"],
    )
    def test_in_a_filename_is_replaced_and_the_document_stored(
        self, server: Server, disposition: bytes, kept: str
    ) -> None:
        """A filename's undecodable bytes become U+FFFD; the name is kept and answered (201)."""
        entity = uuid.uuid4()
        answer = upload(server, form(entity) + file_part(pdf(64), disposition) + END)
        assert answer.status == 201, answer.body
        assert answer.json()["filename"] == kept
        assert [d["filename"] for d in listed(server, entity)] == [kept]
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "target",
        ["/api/v1/documents/%ED%A0%80", "/api/v1/documents/%ED%A0%80/download",
         f"/api/v1/documents/{uuid.uuid4()}?cursor=%ED%A0%80",
         f"/api/v1/documents/{uuid.uuid4()}?entity_type=%ED%A0%80"],
        ids=["list-path", "download-path", "cursor", "entity-type"],
    )
    def test_in_the_url_is_422(self, server: Server, target: str) -> None:
        """Percent-encoded surrogate bytes in a path or query value are 422."""
        answer = exchange(server, request("GET", target, headers=ADMIN))
        assert_problem(answer, 422, "VALIDATION_ERROR")
        assert_still_serving(server)


class TestRequestHead:
    def test_a_head_just_under_the_limit_reaches_the_route(self, server: Server) -> None:
        """A request head of just under 16 KiB (a long cursor) is the route's 422."""
        target = f"/api/v1/documents/{uuid.uuid4()}?cursor="
        head = request("GET", target, headers=ADMIN)
        pad = H11_HEAD_LIMIT - len(head) - 1
        answer = exchange(server, request("GET", target + "A" * pad, headers=ADMIN))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["query", "cursor"]
        assert_still_serving(server)

    def test_a_head_still_incomplete_past_the_limit_is_431_and_closed(
        self, server: Server
    ) -> None:
        """A head that grows past 16 KiB unfinished gets hypercorn's bare 431; it closes."""
        start = b"GET /healthz HTTP/1.1\r\nHost: vault.test\r\nX-Pad: "
        answer = exchange(server, start + b"a" * (H11_HEAD_LIMIT + 1))
        assert answer.status == 431
        assert answer.body == b""
        assert answer.closed
        assert_still_serving(server)

    @pytest.mark.parametrize("size", [100_000, 1_000_000])
    def test_a_whole_head_far_past_the_limit_is_431_or_a_reset(
        self, server: Server, size: int
    ) -> None:
        """A head of 100 KB or 1 MB gets hypercorn's bare 431, or a reset; the server goes on.

        hypercorn answers once 16 KiB of head are buffered and closes with the rest of it
        unread, so the kernel may reset the connection before the 431 is read.
        """
        try:
            answer = exchange(server, request("GET", "/healthz", headers={"X-Pad": "a" * size}))
        except ConnectionResetError:
            pass
        else:
            assert answer.status == 431
            assert answer.closed
        assert_still_serving(server)

    @pytest.mark.parametrize(
        "head",
        [b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + THOUSANDS.encode() + b"\r\n\r\n",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
         b"GET /hea\x00lthz HTTP/1.1\r\nHost: x\r\n\r\n",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad\x00Name: v\r\n\r\n",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Split: a\rb\r\n\r\n"],
        ids=["content-length-5000-digits", "negative-length", "nul-in-target", "nul-in-name",
             "bare-cr"],
    )
    def test_a_head_that_is_not_http_is_hypercorns_400(self, server: Server, head: bytes) -> None:
        """What h11 cannot parse is answered with hypercorn's bare 400 and a closed connection."""
        answer = exchange(server, head)
        assert 400 <= answer.status < 500
        assert answer.closed
        assert_still_serving(server)

    def test_identity_headers_of_thousands_of_bytes_are_401(self, server: Server) -> None:
        """An actor id and a role of 5000 characters are 401, not a crash."""
        answer = exchange(server, request(
            "GET", f"/api/v1/documents/{uuid.uuid4()}",
            headers={"X-Actor-Id": THOUSANDS, "X-Actor-Role": "r" * 5000},
        ))
        assert_problem(answer, 401, "UNAUTHENTICATED")
        assert_still_serving(server)


class TestJsonBodyLimit:
    def test_a_declared_length_over_the_limit_is_413_before_the_body(
        self, server: Server
    ) -> None:
        """A verify ``Content-Length`` over 1 MiB is 413 with no byte of the body sent."""
        head = request("POST", VERIFY, headers=ADMIN, content_type="application/json")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 99999999999999999999")
        problem = assert_problem(exchange(server, head), 413, "FILE_SIZE_EXCEEDED")
        assert problem["max_size_bytes"] == ONE_MIB
        assert_still_serving(server)

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_a_body_over_the_limit_in_64_kib_writes_is_413(
        self, server: Server, chunked: bool
    ) -> None:
        """A verify body of 1 MiB and a bit, written 64 KiB at a time, is 413 (it once hung)."""
        body = b'{"document_id": "' + b"a" * ONE_MIB + b'"}'
        whole = request("POST", VERIFY, headers=ADMIN, body=body,
                        content_type="application/json", chunked=chunked)
        head_end = whole.index(b"\r\n\r\n") + 4
        writes = [whole[:head_end], *_pieces(whole[head_end:], 64 * 1024)]
        problem = assert_problem(exchange(server, *writes), 413, "FILE_SIZE_EXCEEDED")
        assert problem["max_size_bytes"] == ONE_MIB
        assert_still_serving(server)

    def test_a_body_of_exactly_the_limit_is_read(self, server: Server) -> None:
        """A verify body of exactly 1 MiB is parsed: 422 for its content, not 413."""
        padding = ONE_MIB - len(b'{"document_id": ""}')
        body = b'{"document_id": "' + b"a" * padding + b'"}'
        assert len(body) == ONE_MIB
        answer = exchange(server, request("POST", VERIFY, headers=ADMIN, body=body,
                                          content_type="application/json"))
        problem = assert_problem(answer, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["loc"] == ["body", "document_id"]
        assert_still_serving(server)


def _pieces(data: bytes, size: int) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))

