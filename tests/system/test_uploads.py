"""Uploads against the real server: duplicate races and the size limit on the wire."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.system.service import (
    UPLOAD,
    Server,
    StartServer,
    StreamedUpload,
    actor,
    assert_one_winner,
    pdf,
    race,
    upload_form,
)

pytestmark = pytest.mark.system

LIMIT = 1024 * 1024
"""``MAX_UPLOAD_FILE_SIZE_BYTES`` for the size tests."""
OVERSIZED = 32 * 1024 * 1024
"""Far more than the limit plus what the kernel's socket buffers can hold in flight."""


def read_response(sock: socket.socket, received: bytes = b"") -> tuple[bytes, bytes]:
    """Status line and headers, and the body by its Content-Length, from a raw socket."""
    while b"\r\n\r\n" not in received:
        data = sock.recv(65536)
        assert data, "connection closed without a response"
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        data = sock.recv(65536)
        assert data, "connection closed mid-response"
        body += data
    return head, body


def send_reading_early(
    server: Server, body: StreamedUpload
) -> tuple[bytes, dict[str, Any], int]:
    """Send ``body`` chunked over a raw socket, reading while sending.

    Returns the response head, its JSON body, and how many file bytes had
    been handed to the socket when the response began to arrive.
    """
    request = (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Actor-Id: {uuid.uuid4()}\r\n"
        f"X-Actor-Role: admin\r\nContent-Type: {body.content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunks = (f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        received, sending = b"", True
        while not received:
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 10)
            if readable:
                received = sock.recv(65536)
                assert received, "connection closed without a response"
            elif writable:
                try:
                    sock.sendall(next(chunks, b"0\r\n\r\n"))
                except (BrokenPipeError, ConnectionResetError):
                    sending = False  # closed by the server: its answer is waiting to be read
            else:
                pytest.fail("no answer within 10 s")
        sent = body.file_bytes_yielded
        head, response = read_response(sock, received)
    return head, json.loads(response), sent


def stored_objects(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


class TestDuplicateRace:
    async def test_one_process(self, server: Server) -> None:
        """Simultaneous uploads of the same bytes give one 201 and 409s naming it."""
        assert_one_winner(await race([server], uuid.uuid4(), pdf(200_000)))

    async def test_two_processes_sharing_a_data_dir(self, start_server: StartServer) -> None:
        """The duplicate guard holds across two server processes on one data folder."""
        first = start_server()
        second = start_server(data=first.data_dir)
        assert_one_winner(await race([first, second], uuid.uuid4(), pdf(200_000)))


class TestSizeLimit:
    @pytest.fixture
    def server(self, start_server: StartServer) -> Server:
        # A short grace keeps teardown quick should a connection be left hanging.
        return start_server(MAX_UPLOAD_FILE_SIZE_BYTES=str(LIMIT), SHUTDOWN_GRACE_SECONDS="2")

    def test_refusal_arrives_while_the_client_is_sending(self, server: Server) -> None:
        """A chunked upload is answered 413 as its file crosses the limit, long before it ends."""
        body = StreamedUpload(upload_form(uuid.uuid4()), OVERSIZED)
        head, response, sent = send_reading_early(server, body)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert response["error_code"] == "FILE_SIZE_EXCEEDED"
        assert response["max_size_bytes"] == LIMIT
        assert sent < OVERSIZED // 2

    def test_refused_upload_stores_nothing(self, server: Server) -> None:
        """A chunked upload refused for its size leaves no document and no object behind."""
        entity = uuid.uuid4()
        head, _, _ = send_reading_early(server, StreamedUpload(upload_form(entity), OVERSIZED))
        assert head.startswith(b"HTTP/1.1 413 "), head
        with server.client() as client:
            listed = client.get(f"/api/v1/documents/{entity}", headers=actor("admin"))
        assert listed.json()["documents"] == []
        assert stored_objects(server.data_dir) == []

    def test_sequential_client_reads_the_refusal(self, server: Server) -> None:
        """A client that writes its whole body before reading still gets the 413: the server
        answers at once, then reads and drops the rest (a lingering close) instead of
        resetting a connection that still has the answer in flight."""
        entity = uuid.uuid4()
        body = StreamedUpload(upload_form(entity), OVERSIZED)
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            response = client.post(
                UPLOAD, content=iter(body),
                headers={**actor("admin"), "Content-Type": body.content_type},
            )
        assert response.status_code == 413, response.text
        assert response.json()["error_code"] == "FILE_SIZE_EXCEEDED"
        assert stored_objects(server.data_dir) == []

    def test_client_carries_on_after_a_refused_upload(self, server: Server) -> None:
        """After a 413 the same HTTP client gets its next answer (new connection or reused)."""
        body = StreamedUpload(upload_form(uuid.uuid4()), 2 * LIMIT)
        with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
            try:
                refused = client.post(
                    UPLOAD, content=iter(body),
                    headers={**actor("admin"), "Content-Type": body.content_type},
                )
                assert refused.status_code == 413, refused.text
                after = client.get("/healthz")
            except httpx.TimeoutException as exc:
                pytest.fail(f"the client was left hanging after a refused upload: {exc!r}")
        assert after.status_code == 200

    def test_declared_length_over_the_limit_is_refused_unread(self, server: Server) -> None:
        """A Content-Length far over the limit answers 413 before any body byte is sent."""
        request = (
            f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Actor-Id: {uuid.uuid4()}\r\n"
            "X-Actor-Role: admin\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {100 * LIMIT}\r\n\r\n"
        ).encode()
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            head, response = read_response(sock)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert json.loads(response)["error_code"] == "FILE_SIZE_EXCEEDED"
        assert time.monotonic() - started < 5
