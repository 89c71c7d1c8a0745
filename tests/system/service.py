"""The real service as a subprocess (``python -m vault serve``), and how tests talk to it.

Each server writes stdout and stderr to its own log file; its JSON lines
are how the tests see what never leaves the process (on the embedded
default, published events are logged). ``Production`` describes PostgreSQL
and S3 on moto's server for servers that run on the production backends.

Across processes there is nothing to await: waiting for a server is polling,
with ``tests.polling.eventually_sync`` (or ``eventually`` in Trio tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import boto3
import httpx
import pytest
import trio
import trio.testing
from botocore.config import Config

from tests.pg import PgDatabase
from tests.polling import eventually_sync
from vault.config import Settings

START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 60
UPLOAD = "/api/v1/documents/upload"

MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
MOTO_REGION = "us-east-1"

CONFIG_NAMES = frozenset(name for name, _ in Settings().describe())
"""Every variable the service reads; none is inherited from the test runner."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vault_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any vault variable, plus ``overrides``.

    The integrity sweep is off unless asked for: its verifications of new
    uploads would otherwise mix with what a test does.
    """
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_NAMES}
    env["INTEGRITY_SWEEP_PERIOD_HOURS"] = "0"
    env.update(overrides)
    return env


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        env=dict(env), capture_output=True, text=True, timeout=60, check=False,
    )


def actor(role: str = "admin") -> dict[str, str]:
    """Header identity for a new actor with ``role``."""
    return {"X-Actor-Id": str(uuid.uuid4()), "X-Actor-Role": role}


def upload_form(entity_id: uuid.UUID, **extra: str) -> dict[str, str]:
    return {
        "entity_id": str(entity_id), "entity_type": "issuer", "document_type": "kyc", **extra
    }


def pdf(size: int = 2048) -> bytes:
    """Unique PDF-looking bytes."""
    head = b"%PDF-1.7\n" + uuid.uuid4().bytes
    return head + os.urandom(max(0, size - len(head)))


def post_upload(client: httpx.Client, headers: dict[str, str], entity: uuid.UUID,
                content: bytes, filename: str = "agreement.pdf") -> httpx.Response:
    """A multipart upload as httpx streams it: form fields first, then the file."""
    return client.post(
        UPLOAD, headers=headers, data=upload_form(entity),
        files={"file": (filename, content, "application/pdf")},
    )


RACERS = 8
"""How many identical uploads ``race`` sends at once."""


async def race(servers: list[Server], entity: uuid.UUID, content: bytes) -> list[httpx.Response]:
    """``RACERS`` uploads of the same bytes for one entity, all in flight at once."""
    headers = actor("issuer")
    responses: list[httpx.Response] = []
    clients = [server.async_client() for server in servers]
    ready = trio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        await ready.wait()
        responses.append(await client.post(
            UPLOAD, headers=headers, data=upload_form(entity),
            files={"file": ("same.pdf", content, "application/pdf")},
        ))

    try:
        async with trio.open_nursery() as nursery:
            for i in range(RACERS):
                nursery.start_soon(one, clients[i % len(clients)])
            await trio.testing.wait_all_tasks_blocked()
            ready.set()
    finally:
        for client in clients:
            await client.aclose()
    return responses


def assert_one_winner(responses: list[httpx.Response]) -> None:
    """One racer got 201; every other got 409 naming the winner's document."""
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: RACERS - 1}, [r.text for r in responses]
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    for response in responses:
        if response.status_code == 409:
            body = response.json()
            assert body["error_code"] == "DUPLICATE_DOCUMENT"
            assert body["existing_document_id"] == winner


class StreamedUpload:
    """A multipart upload body produced chunk by chunk, fields first, counting what it yields.

    ``pause_after`` bytes of the file are yielded, then the body waits for
    ``resume`` (a ``threading.Event``) before yielding the rest.
    """

    BOUNDARY = "systemTestBoundary0d5a77"
    CHUNK = 64 * 1024

    def __init__(
        self,
        fields: Mapping[str, str],
        file_size: int,
        *,
        filename: str = "big.pdf",
        pause_after: int | None = None,
        resume: Any = None,
        paused: Any = None,
    ) -> None:
        self.fields = fields
        self.file_size = file_size
        self.filename = filename
        self.pause_after = pause_after
        self.resume = resume
        self.paused = paused
        self.file_bytes_yielded = 0
        self.content = bytearray()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.BOUNDARY}"

    def head(self) -> bytes:
        parts = [
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.fields.items()
        ]
        parts.append(
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{self.filename}"\r\nContent-Type: application/pdf\r\n\r\n'
        )
        return "".join(parts).encode()

    def tail(self) -> bytes:
        return f"\r\n--{self.BOUNDARY}--\r\n".encode()

    def file_chunks(self) -> Iterator[bytes]:
        first = b"%PDF-1.7\n" + uuid.uuid4().bytes
        while self.file_bytes_yielded < self.file_size:
            size = min(self.CHUNK, self.file_size - self.file_bytes_yielded)
            chunk = (first + os.urandom(size))[:size] if self.file_bytes_yielded == 0 else (
                os.urandom(size)
            )
            self.file_bytes_yielded += len(chunk)
            self.content += chunk
            yield chunk
            if self.pause_after is not None and self.file_bytes_yielded == self.pause_after:
                if self.paused is not None:
                    self.paused.set()
                self.resume.wait(STOP_TIMEOUT)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head()
        yield from self.file_chunks()
        yield self.tail()


@attrs.define
class Server:
    """One running ``vault serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30.0)

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        lines = []
        for raw in self.log_path.read_text("utf-8", "replace").splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                lines.append(entry)
        return lines

    def published(self, destination: str) -> list[dict[str, Any]]:
        """Bodies of the events the log sink published to ``destination``."""
        return [
            line["body"] for line in self.log_lines()
            if line.get("event") == "event_published" and line.get("destination") == destination
        ]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code; a process still alive at ``timeout`` is killed and the test fails."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"server still running {timeout} s after SIGTERM\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code."""
        if self.running():
            self.terminate()
        return self.wait(timeout)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/healthz`` until 200 (a process that exits meanwhile fails at once)."""
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:

            def healthy() -> bool:
                if not self.running():
                    pytest.fail(
                        f"server exited with {self.process.returncode} while starting\n"
                        f"{self.log_tail()}"
                    )
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            eventually_sync(
                healthy, "the server to answer /healthz with 200",
                within=timeout, interval=POLL_INTERVAL, describe=self.log_tail,
            )

    def actor_health(self, name: str) -> dict[str, Any]:
        """``/healthz/actors/<name>``: one actor's health snapshot."""
        with self.client() as client:
            snapshot: dict[str, Any] = client.get(f"/healthz/actors/{name}").json()
        return snapshot

    def logged(self, event: str) -> bool:
        """Whether the server has logged ``event`` so far."""
        return any(line.get("event") == event for line in self.log_lines())

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every log line of ``event`` written so far, oldest first."""
        return [line for line in self.log_lines() if line.get("event") == event]


def blob_keys(data_dir: Path) -> set[str]:
    """The keys of every committed object of the embedded blob store under ``data_dir``."""
    objects = data_dir / "blobs" / "objects"
    if not objects.exists():
        return set()
    return {path.relative_to(objects).as_posix() for path in objects.rglob("*") if path.is_file()}


def blob_temp_files(data_dir: Path) -> list[Path]:
    """Writes in progress (or left by a writer that died) in the embedded blob store."""
    tmp = data_dir / "blobs" / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def document_keys(data_dir: Path) -> dict[str, str]:
    """``{document id: storage_key}`` of every row in the embedded default's SQLite file,
    read behind the server's back (safe while it runs: WAL readers see the last commit);
    empty before the first start has made the file and its tables."""
    path = data_dir / "vault.sqlite3"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT id, storage_key FROM documents").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    finally:
        conn.close()
    return {str(document_id): str(key) for document_id, key in rows}


StartServer = Callable[..., Server]
"""``start_server(data=None, **env)``: a healthy server, stopped at teardown."""


def spawn(data_dir: Path, log_path: Path, env: Mapping[str, str]) -> Server:
    """Start ``vault serve`` on a free port, on ``data_dir`` with ``env`` on top of the test
    defaults, logging to ``log_path``; return at once (see ``Server.wait_healthy``)."""
    port = free_port()
    environment = vault_env(
        VAULT_DATA_DIR=str(data_dir), HOST="127.0.0.1", PORT=str(port),
        ENVIRONMENT="test", LOG_LEVEL="INFO",
    )
    environment.update(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vault", "serve"],
            env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    return Server(process, port, data_dir, log_path)


def launch(data_dir: Path, log_path: Path, env: Mapping[str, str]) -> Server:
    """``spawn``, then wait until healthy; a server that never gets there is stopped (for
    fixtures wider than one test, which cannot use ``start_server``)."""
    server = spawn(data_dir, log_path, env)
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server


@attrs.frozen
class Production:
    """The production backends of one test, and clients to look behind the server's back."""

    database: PgDatabase
    endpoint: str
    """moto's server, where every AWS client of the server points."""
    bucket: str
    kms_key_id: str
    s3: Any
    """A boto3 S3 client on moto."""

    def env(self, *, database_url: str | None = None) -> dict[str, str]:
        """What a server needs to run on these backends (``database_url`` overrides the URL)."""
        return {
            "DATABASE_URL": database_url or self.database.url,
            "DOCUMENT_VAULT_BUCKET": self.bucket,
            "AWS_S3_KMS_KEY_ID": self.kms_key_id,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": MOTO_REGION,
            **MOTO_CREDENTIALS,
        }


def moto_client(endpoint: str, service: str) -> Any:
    """A boto3 client for ``service`` on moto's server, with the test credentials."""
    return boto3.session.Session(
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_REGION,
    ).client(
        service,
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4") if service == "s3" else None,
    )
