"""The tlog-witness client's reading of each answer, against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.adapters.witness_client import (
    Cosigned,
    Refused,
    SizeConflict,
    WitnessClient,
    WitnessUnavailable,
)
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.merkle import EMPTY_ROOT
from vault.domain.note import Signer
from vault.domain.witness import AddCheckpointRequest

ORIGIN = "example.com/log"
NOTE = signed_checkpoint(
    Checkpoint(ORIGIN, 0, EMPTY_ROOT), Signer.from_key(ORIGIN, Ed25519PrivateKey.generate())
)


class _Answers(BaseHTTPRequestHandler):
    answer: tuple[int, str, bytes] = (200, "text/plain", b"")
    seen: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, body))
        status, content_type, payload = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def witness() -> Iterator[tuple[type[_Answers], str]]:
    handler = type("Answers", (_Answers,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/w/"
    finally:
        server.shutdown()
        server.server_close()


def _ask(url: str) -> object:
    client = WitnessClient(url, timeout=5)
    try:
        return client.add_checkpoint(0, [], NOTE)
    finally:
        client.close()


def test_the_request_is_the_protocols_body(witness: tuple[type[_Answers], str]) -> None:
    handler, url = witness
    handler.answer = (200, "text/plain", "— w1 AAAA\n".encode())
    assert _ask(url) == Cosigned("— w1 AAAA\n")
    path, body = handler.seen[0]
    assert path == "/w/add-checkpoint"
    assert AddCheckpointRequest.parse(body) == AddCheckpointRequest(0, (), NOTE)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((409, "text/x.tlog.size", b"42\n"), SizeConflict(42)),
        ((403, "text/plain", b"not signed by\n  a trusted key\n"),
         Refused(403, "not signed by a trusted key")),
        ((404, "text/plain", b""), Refused(404, "no reason given")),
        ((422, "text/plain", b"bad proof\n"), Refused(422, "bad proof")),
    ],
)
def test_each_answer_is_its_own_type(
    witness: tuple[type[_Answers], str], answer: tuple[int, str, bytes], expected: object
) -> None:
    handler, url = witness
    handler.answer = answer
    assert _ask(url) == expected


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ((200, "text/plain", b""), "without cosignature lines"),
        ((409, "text/plain", b"42\n"), "without a tree size"),
        ((409, "text/x.tlog.size", b"forty\n"), "without a tree size"),
        ((500, "text/plain", b"oops"), "answered HTTP 500"),
        ((200, "text/plain", b"\xff\xfe\n"), "not UTF-8"),
        ((200, "text/plain", b"x" * (64 * 1024 + 1)), "more than 65536 bytes"),
    ],
)
def test_an_answer_outside_the_protocol_is_unavailable(
    witness: tuple[type[_Answers], str], answer: tuple[int, str, bytes], says: str
) -> None:
    handler, url = witness
    handler.answer = answer
    with pytest.raises(WitnessUnavailable, match=says) as caught:
        _ask(url)
    assert "127.0.0.1" in str(caught.value)


def test_a_closed_port_is_unavailable_naming_the_url() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    port = server.server_address[1]
    server.server_close()
    with pytest.raises(WitnessUnavailable, match=f"cannot reach the witness at http://127.0.0.1:{port}"):
        _ask(f"http://127.0.0.1:{port}")
