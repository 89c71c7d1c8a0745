"""A stand-in for the Entity & Permissions service, for the suites that talk to one.

``FakePermissionService`` is a real HTTP server on loopback whose answers a
test scripts; ``closed_port_url`` is where nothing listens. The
``permission_service`` fixture (in ``tests/conftest.py``) runs one per test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import attrs

from vault.adapters.permissions_service import MAX_ANSWER_BYTES

Answer = Literal[
    "allow", "deny", "error", "garbage", "wrong shape", "empty", "huge", "redirect", "hang", "held"
]


@attrs.frozen
class Received:
    """One request as the permission service saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakePermissionService:
    """A stand-in for the Entity & Permissions service: a real HTTP server on 127.0.0.1.

    ``answer`` chooses every reply (or a function of the request body
    does); each request is recorded in ``requests`` as it arrives. "hang"
    never answers: it waits on ``release``, which ``stop`` sets. "held"
    answers allow once ``gate`` is set, so a test can keep calls in flight.
    """

    def __init__(self) -> None:
        self.answer: Answer | Callable[[Any], Answer] = "allow"
        self.requests: list[Received] = []
        self.release = threading.Event()
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[FakePermissionService]:
        service = cls()
        service.start()
        try:
            yield service
        finally:
            service.stop()

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
        answer = self.answer
        return answer(received.body) if callable(answer) else answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                answer = service._record(
                    Received("POST", self.path, dict(self.headers.items()), body)
                )
                match answer:
                    case "allow":
                        self._reply(200, b'{"authorized": true}')
                    case "deny":
                        self._reply(200, b'{"authorized": false}')
                    case "error":
                        self._reply(500, b'{"detail": "internal error"}')
                    case "garbage":
                        self._reply(200, b"<html>authorized</html>", "text/html")
                    case "wrong shape":
                        self._reply(200, b'{"authorized": "yes"}')
                    case "empty":
                        self._reply(204, b"")
                    case "huge":
                        self._reply(200, b'{"authorized": true, "pad": "'
                                    + b"x" * MAX_ANSWER_BYTES + b'"}')
                    case "redirect":
                        self._reply(302, b"", headers={"Location": "/elsewhere"})
                    case "hang":
                        service.release.wait()
                        self.close_connection = True
                    case "held":
                        service.gate.wait()
                        self._reply(200, b'{"authorized": true}')

            def _reply(
                self, status: int, body: bytes, content_type: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's own assertions say what happened

        return Handler


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
