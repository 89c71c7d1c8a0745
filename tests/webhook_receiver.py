"""A webhook receiver for the notification tests: a real HTTP server on loopback.

Its answers follow a script, one step a request: a status to answer with
(500, 404 …) or ``"hang"`` (read the request, never answer until the
receiver stops). When the script runs out it accepts (200). Every request
is recorded, hung ones included, with its path, headers and JSON body.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import attrs

Step = int | Literal["hang"]


@attrs.frozen
class Call:
    path: str
    headers: dict[str, str]
    body: Any
    answer: Step


class WebhookReceiver:
    def __init__(self, script: Iterable[Step] = ()) -> None:
        self.script: deque[Step] = deque(script)
        self.calls: list[Call] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/T000/B000/s3cr3t"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @classmethod
    @contextlib.contextmanager
    def running(cls, script: Iterable[Step] = ()) -> Iterator[WebhookReceiver]:
        receiver = cls(script)
        receiver._thread.start()
        try:
            yield receiver
        finally:
            receiver.release.set()
            receiver._server.shutdown()
            receiver._server.server_close()
            receiver._thread.join()

    def then(self, *steps: Step) -> None:
        with self._lock:
            self.script.extend(steps)

    def answered(self, status: Step) -> list[Any]:
        """Bodies of the calls answered with ``status`` (``"hang"``: never answered)."""
        with self._lock:
            return [c.body for c in self.calls if c.answer == status]

    def accepted_types(self) -> list[str]:
        return [body["event_type"] for body in self.answered(200)]

    def _next(self, path: str, headers: dict[str, str], body: Any) -> Step:
        with self._lock:
            step = self.script.popleft() if self.script else 200
            self.calls.append(Call(path, headers, body, step))
            return step

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                step = receiver._next(self.path, dict(self.headers.items()), json.loads(raw))
                if step == "hang":
                    receiver.release.wait()
                    self.close_connection = True
                    return
                answer = b"ok" if step == 200 else b"invalid_payload\nmore detail"
                self.send_response(step)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
