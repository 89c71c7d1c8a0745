"""The processes of ``python -m ops.bench outside``, and the witnessing figures.

Records of both sections, the plumbing (``vault witness serve`` and
``vault serve`` processes, uploads, health, receipts, the server's JSON
log) and the witnessing section: two witnesses, quorum 2, one ``vault
serve``. Every process is registered on the caller's ``ExitStack`` as soon
as it is started, so it is stopped however the run ends. The anchor
section, the command line and the report are in ``ops.bench.outside``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ops.bench.console import BenchError, progress
from ops.bench.multipart import document_prefix, multipart_body
from ops.bench.server import SpawnedServer, free_port, stop_process, wait_healthy
from ops.bench.stats import percentile
from vault.config import Settings
from vault.domain.note import Signer

T = TypeVar("T")

ORIGIN = "bench.vault.example/outside"
API = "/api/v1/documents"
DOCUMENT_SIZE = 2048
WAIT_S = 60.0
POLL_S = 0.02
WITNESS_START_S = 20.0
# What SpawnedServer sets itself; every other vault variable is cleared for the server.
_SPAWN_SETS = {"VAULT_DATA_DIR", "PORT", "HOST", "LOG_LEVEL", "ENVIRONMENT"}
CONFIG_NAMES = frozenset(name for name, _ in Settings().describe())


# --------------------------------------------------------------------------- records


@attrs.frozen
class Quantiles:
    """Milliseconds: count, p50, p90, p99, max (None when there are no samples)."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Quantiles:
        ms = [s * 1000 for s in seconds]

        def q(pct: float) -> float | None:
            return percentile(ms, pct)

        return cls(len(ms), q(50), q(90), q(99), max(ms) if ms else None)


@attrs.frozen
class WitnessRow:
    """One witness as /healthz/actors/ledger shows it at the end of the run."""

    name: str
    latency_ms: float | None
    cosigned_size: int
    cosignatures: int
    failures: int
    last_error: str | None


@attrs.frozen
class WitnessRun:
    uploads: int
    interval_s: float
    quorum: int
    signed: int  # checkpoint_signed lines
    published: int  # checkpoint_published lines
    signed_to_published: Quantiles  # server log timestamps
    upload_to_published: Quantiles  # client: upload answered -> health published_size
    witnesses: tuple[WitnessRow, ...]
    receipt_bytes: int | None  # a cosigned receipt, no anchors


@attrs.frozen
class AnchorEntry:
    kind: str
    json_bytes: int  # the entry in the receipt's compact JSON
    checkpoint_size: int  # the anchored checkpoint's tree size


@attrs.frozen
class AnchorRun:
    uploads: int
    kinds: tuple[str, ...]  # what was configured: rfc3161, evm
    missing: tuple[str, ...]  # "rfc3161: why", "evm: why"
    wait_s: float  # last upload answered -> a receipt with every configured anchor
    receipt_bytes_with: int
    receipt_bytes_without: int  # the same receipt with "anchors": [] (orjson, as served)
    without_exact: bool  # re-encoding the received JSON gave its very bytes
    entries: tuple[AnchorEntry, ...]
    token_bytes: int | None
    token_b64_chars: int | None
    tx_hash: str | None
    gas_used: int | None
    effective_gas_price_wei: int | None
    calldata_bytes: int | None


# --------------------------------------------------------------------------- plumbing


def clean_env(settings: Mapping[str, str]) -> dict[str, str | None]:
    """Overrides for SpawnedServer: every inherited vault variable removed, then settings."""
    cleared: dict[str, str | None] = {n: None for n in CONFIG_NAMES - _SPAWN_SETS}
    return {**cleared, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json", **settings}


def log_identity() -> tuple[str, str]:
    """A fresh Ed25519 log key: its verifier key string and its PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Signer.from_key(ORIGIN, key).verifier().format(), pem


def poll(check: Callable[[], T | None], what: str, within: float = WAIT_S) -> T:
    """check() every POLL_S seconds until truthy; BenchError after within seconds."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(POLL_S)


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``event`` in the server's log file, oldest first."""
    out = []
    for raw in path.read_text("utf-8", "replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            line = json.loads(raw)
            if isinstance(line, dict) and line.get("event") == event:
                out.append(line)
    return out


def event_time(line: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))


class WitnessProc:
    """One ``vault witness serve`` following the bench's log key."""

    def __init__(self, name: str, folder: Path, log_key: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{name}.log"
        home = folder / name
        home.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WITNESS_")}
        self.env.update(
            WITNESS_LOGS=json.dumps([log_key]),
            WITNESS_NAME=name,
            WITNESS_KEY_FILE=str(home / "witness.key"),
            WITNESS_DB=str(home / "state.sqlite3"),
            WITNESS_HOST="127.0.0.1",
            WITNESS_PORT=str(self.port),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def key(self) -> str:
        """What ``vault witness key`` prints (it makes the key file on first use)."""
        done = subprocess.run(
            [sys.executable, "-m", "vault", "witness", "key"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"vault witness key ({self.name}): {done.stderr.strip()[-300:]}")
        return done.stdout.strip()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vault", "witness", "serve"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def listening(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-800:]
            raise BenchError(f"{self.name} exited before listening:\n{tail}")
        try:
            return httpx.get(f"{self.url}/add-checkpoint", timeout=2.0).status_code == 405
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            code = stop_process(self.proc, self.name)
            progress(f"{self.name} stopped, exit code {code}")


def start_server(
    stack: contextlib.ExitStack, folder: Path, settings: dict[str, str], notes: list[str]
) -> SpawnedServer:
    """A healthy ``vault serve`` (stopped when ``stack`` closes), its log at INFO in JSON;
    an exit code other than 0 after SIGTERM is added to ``notes``."""
    folder.mkdir(parents=True)
    server = SpawnedServer(folder, clean_env(settings))
    server.start()

    def stop() -> None:
        code = server.stop()
        progress(f"vault serve ({folder.parent.name}) stopped, exit code {code}")
        if code != 0:
            notes.append(f"vault serve ({folder.parent.name}) exited {code} after SIGTERM")
            print(f"bench: server log, last lines:\n{server.log_tail()}", file=sys.stderr)

    stack.callback(stop)
    progress(f"started vault serve pid {server.pid} on {server.url}")
    try:
        wait_healthy(server.url, server)
    except BenchError:
        print(f"bench: server log, last lines:\n{server.log_tail()}", file=sys.stderr)
        raise
    return server


class Client:
    """Uploads, health and receipts against one server, as one admin."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url,
            timeout=30.0,
            headers={"X-Actor-Id": str(uuid.uuid4()), "X-Actor-Role": "admin"},
        )
        self.tag = uuid.uuid4().hex[:12]
        self.counter = itertools.count()
        self.payload = os.urandom(DOCUMENT_SIZE)

    def close(self) -> None:
        self.http.close()

    def upload(self) -> str:
        form = {"entity_id": str(uuid.uuid4()), "entity_type": "issuer", "document_type": "other"}
        body = multipart_body(
            form, prefix=document_prefix(self.tag, next(self.counter)), payload=self.payload
        )
        r = self.http.post(f"{API}/upload", content=body.chunks(), headers=body.headers)
        if r.status_code != 201:
            raise BenchError(f"upload answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["id"])

    def ledger(self) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get("/healthz/actors/ledger").json()
        return found

    def receipt(self, document_id: str) -> httpx.Response | None:
        """The receipt's 200 answer, or None while it is pending (202)."""
        r = self.http.get(f"{API}/{document_id}/receipt")
        if r.status_code == 202:
            return None
        if r.status_code != 200:
            raise BenchError(f"receipt answered {r.status_code}: {r.text[:300]}")
        return r


# --------------------------------------------------------------------------- witnessing


def witness_run(
    stack: contextlib.ExitStack, folder: Path, uploads: int, interval: float, notes: list[str]
) -> WitnessRun:
    """Two witnesses, quorum 2; ``uploads`` uploads, each waited for until published."""
    log_key, pem = log_identity()
    witnesses = [WitnessProc(n, folder, log_key) for n in ("witness-a", "witness-b")]
    listed = [{"url": w.url, "key": w.key()} for w in witnesses]
    for w in witnesses:
        w.start()
        stack.callback(w.stop)
    for w in witnesses:
        poll(w.listening, f"{w.name} to listen", WITNESS_START_S)
        progress(f"{w.name} listening on {w.url}")
    server = start_server(stack, folder / "vault", {
        "LEDGER_SIGNING_KEY": pem,
        "LEDGER_ORIGIN": ORIGIN,
        "LEDGER_WITNESSES": json.dumps(listed),
        "LEDGER_WITNESS_QUORUM": "2",
        "LEDGER_CHECKPOINT_INTERVAL_SECONDS": f"{interval:g}",
    }, notes)  # fmt: skip
    client = Client(server.url)
    stack.callback(client.close)
    waits: list[float] = []
    last_id = ""
    progress(f"{uploads} uploads, each waited for until its checkpoint is cosigned")
    for i in range(uploads):
        last_id = client.upload()
        answered = time.monotonic()
        head = client.ledger()
        target = max(int(head.get("tree_size", 0)) + int(head.get("pending", 0)), i + 1)

        def published(target: int = target) -> bool:
            if server.exited() is not None:
                raise BenchError(f"vault serve exited with {server.exited()}")
            return int(client.ledger().get("published_size", 0)) >= target

        poll(published, f"tree size {target} to be published")
        waits.append(time.monotonic() - answered)
    health = client.ledger()
    receipt = poll(lambda: client.receipt(last_id), "the last document's receipt")
    log = server.log_path
    signed: dict[int, datetime] = {}
    for line in log_events(log, "checkpoint_signed"):
        signed.setdefault(int(line["tree_size"]), event_time(line))
    published_at: dict[int, datetime] = {}
    for line in log_events(log, "checkpoint_published"):
        published_at.setdefault(int(line["tree_size"]), event_time(line))
    latencies = [
        (at - signed[size]).total_seconds() for size, at in published_at.items() if size in signed
    ]
    rows = tuple(
        WitnessRow(
            name=name,
            latency_ms=w.get("latency_ms"),
            cosigned_size=int(w.get("cosigned_size", 0)),
            cosignatures=int(w.get("cosignatures", 0)),
            failures=int(w.get("failures", 0)),
            last_error=w.get("last_error"),
        )
        for name, w in sorted(dict(health.get("witnesses", {})).items())
    )
    return WitnessRun(
        uploads=uploads,
        interval_s=interval,
        quorum=2,
        signed=len(signed),
        published=len(published_at),
        signed_to_published=Quantiles.of(latencies),
        upload_to_published=Quantiles.of(waits),
        witnesses=rows,
        receipt_bytes=len(receipt.content),
    )
