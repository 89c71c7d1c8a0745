"""What ``test_outside.py`` drives the ledger's outside parts with, and reads behind them.

A vault runs in-process as ``tests/actors`` runs it (``build_backends`` on a
SQLite store and local blobs), optionally with an ``S3LogMirror`` put in its
``Backends``. Anchor jobs are read straight from ``ledger_anchors`` in the
SQLite file; receipts come through the HTTP route (the app's test client)
or ``LogReads.receipt`` and ``receipt_json``. ``LateServer`` is a URL that
refuses connections until started, then forwards every POST to a real
server (the local TSA). ``read_mirror`` is a tlog-tiles client that sees
only the bucket.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import attrs
import httpx
import trio

from actors.access import MatrixAuthorizer
from actors.deps import Backends
from actors.log_reads import Receipt
from actors.outside import Outside
from actors.system import Sizing, Vault, run_vault
from tests.actors.helpers import database_path
from tests.mirror_reader import get_object, read_tiles_log
from tests.support import actor_headers
from vault.adapters.blobs.log_mirror import S3LogMirror
from vault.config import Settings
from vault.domain.checkpoint import Checkpoint
from vault.domain.models import Role
from vault.domain.note import Verifier
from vault.ports import BlobStore
from vault.wiring import url_signer
from vault_http.app import create_app
from vault_http.identity import HeaderIdentity
from vault_http.ledger import receipt_json

# ---------------------------------------------------------------- a running vault


@contextlib.asynccontextmanager
async def running_vault(
    nursery: trio.Nursery, settings: Settings, *, log_mirror: S3LogMirror | None = None,
    blobs: BlobStore | None = None, clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Vault]:
    """Every actor on the service's backends for ``settings`` (with ``log_mirror``,
    ``blobs`` or the records' ``clock`` instead of what the settings make); stopped (and
    closed) after."""
    from vault_http.serve import build_backends

    backends, _ = await trio.to_thread.run_sync(build_backends, settings)
    if log_mirror is not None:
        backends = attrs.evolve(backends, log_mirror=log_mirror)
    if blobs is not None:
        backends = attrs.evolve(backends, blobs=blobs)
    if clock is not None:
        backends = attrs.evolve(backends, clock=clock)
    assert isinstance(backends, Backends)
    running: Vault = await nursery.start(run_vault, backends, Sizing())
    try:
        yield running
    finally:
        await running.stop(5)
        await trio.to_thread.run_sync(backends.store.close)


def outside_of(vault: Vault) -> Outside:
    """The ledger's ``Outside`` (its health's live part is ``Outside.snapshot``)."""
    live = vault.ledger.health.live
    owner = getattr(live, "__self__", None)
    assert isinstance(owner, Outside)
    return owner


def health(vault: Vault) -> dict[str, Any]:
    return vault.ledger.health.snapshot()


def anchor_health(vault: Vault, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = health(vault)["anchors"][kind]
    return found


# ---------------------------------------------------------------- anchor rows


@attrs.frozen
class AnchorRow:
    kind: str
    size: int
    state: str
    created_at: str
    leased_until: str | None
    attempts: int
    last_error: str | None
    tx_hash: str | None
    nonce: int | None
    token: bytes | None
    chain_id: int | None
    block_number: int | None
    block_hash: str | None
    anchored_at: str | None


def _read_anchors(path: Any, kind: str | None) -> list[AnchorRow]:
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT kind, size, state, created_at, leased_until, attempts, last_error,"
            " tx_hash, nonce, token, chain_id, block_number, block_hash, anchored_at"
            " FROM ledger_anchors ORDER BY kind, size"
        ).fetchall()
    finally:
        conn.close()
    out = [
        AnchorRow(**{key: row[key] for key in row.keys()})  # noqa: SIM118 (sqlite3.Row)
        for row in rows
    ]
    return [row for row in out if kind is None or row.kind == kind]


def anchor_rows(vault: Vault, kind: str | None = None) -> list[AnchorRow]:
    """Every ``ledger_anchors`` row (of ``kind``), by kind and size. Blocks: use in a thread."""
    return _read_anchors(database_path(vault), kind)


def done_rows(vault: Vault, kind: str) -> list[AnchorRow]:
    return [row for row in anchor_rows(vault, kind) if row.state == "done"]


# ---------------------------------------------------------------- receipts


async def receipt_of(vault: Vault, document_id: UUID) -> dict[str, Any]:
    """The document's receipt JSON as the route writes it (``LogReads`` + ``receipt_json``)."""
    found = await vault.log_reads.receipt(document_id, None)
    assert isinstance(found, Receipt), found
    return receipt_json(found)


async def receipt_over_http(vault: Vault, document_id: UUID) -> tuple[int, bytes]:
    """``GET /api/v1/documents/<id>/receipt`` through the app's test client: status, body."""
    settings = vault.backends.settings
    app = create_app(
        vault, identity=HeaderIdentity(settings.epr_mock_roles),
        authorizer=MatrixAuthorizer(), signer=url_signer(settings),
    )
    client = app.test_client()
    response = await client.get(
        f"/api/v1/documents/{document_id}/receipt", headers=actor_headers(Role.ADMIN)
    )
    return response.status_code, await response.get_data(as_text=False)


def as_text(receipt: dict[str, Any]) -> str:
    return json.dumps(receipt)


# ---------------------------------------------------------------- a late server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Forward(BaseHTTPRequestHandler):
    target: str
    posts: list[int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.posts.append(len(body))
        answer = httpx.post(
            self.target, content=body, timeout=10.0,
            headers={"Content-Type": self.headers.get("Content-Type") or ""},
        )
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LateServer:
    """``url`` refuses connections (nothing listens) until ``start``; then it forwards
    every POST to ``target`` and answers what that answered."""

    def __init__(self, target: str, path: str = "/tsa") -> None:
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.posts: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        handler = type("Forward", (_Forward,), {"target": self.target, "posts": self.posts})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None


# ---------------------------------------------------------------- polling


async def stays(
    check: Callable[[], object], what: str, *, seconds: float, interval: float = 0.05
) -> None:
    """Fail as soon as ``check()`` (blocking, run in a thread) is falsy within ``seconds``."""
    deadline = trio.current_time() + seconds
    while True:
        answer = await trio.to_thread.run_sync(check)
        assert answer, f"{what} stopped holding (last check: {answer!r})"
        if trio.current_time() >= deadline:
            return
        await trio.sleep(interval)


# ---------------------------------------------------------------- the bucket alone


def read_mirror(
    client: Any, bucket: str, verifier: Verifier, prefix: str = "ledger/"
) -> tuple[Checkpoint, list[bytes]]:
    """A tlog-tiles client with the bucket alone (``tests.mirror_reader``): the bucket's
    checkpoint, checked against its tiles, and every leaf, in order."""
    checkpoint, bundles = read_tiles_log(
        get_object(client, bucket, prefix + "checkpoint"),
        lambda path: get_object(client, bucket, prefix + path), verifier,
    )
    leaves = [leaf for bundle in bundles for leaf in bundle]
    assert len(leaves) == checkpoint.size
    return checkpoint, leaves
