"""The processes and the load of ``python -m ops.bench sweep``, and its records.

One data folder, three ``vault serve`` processes in turn on it: the seeding
one and phase A's with the sweep off (``INTEGRITY_SWEEP_PERIOD_HOURS=0``),
phase B's with it on. Each is registered on an ``ExitStack`` as soon as it
is started (``outside_run.start_server``), so it is stopped however the run
ends. The client load: ``clients`` tasks, each with its own keep-alive
connection, alternating 100 KB uploads and list requests for a fixed time.
The command line and the report are in ``ops.bench.sweep``.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import attrs
import httpx

from ops.bench.console import BenchError, progress
from ops.bench.load import CLIENT_BACKEND, describe_error
from ops.bench.multipart import document_prefix, multipart_body
from ops.bench.outside_run import Quantiles, start_server
from ops.bench.server import SpawnedServer, process_cpu_seconds
from ops.bench.stats import Status

API = "/api/v1/documents"
REQUEST_TIMEOUT_S = 30.0
STATUS_POLL_S = 1.0
LIST_LIMIT = 100

# One request: its kind, the status it must answer, and how to send it on a client.
Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
Job = tuple[str, int, Send]


class Sample(NamedTuple):
    kind: str
    status: Status
    seconds: float
    ok: bool
    error: str | None


# --------------------------------------------------------------------------- records


@attrs.frozen
class SeedRun:
    documents: int
    size_bytes: int
    clients: int
    entities: int
    wall_s: float
    ok: int
    errors: int
    first_error: str | None

    @property
    def rps(self) -> float | None:
        return self.ok / self.wall_s if self.wall_s > 0 else None


@attrs.frozen
class KindFigures:
    kind: str
    requests: int
    errors: int
    latency: Quantiles  # the answered-as-expected requests


@attrs.frozen
class SweepCounters:
    """The verifier's health ``sweep`` counters at one moment."""

    at: float  # time.monotonic()
    documents: int
    bytes_read: int
    failures: int
    mismatches: int


@attrs.frozen
class SweepPace:
    seconds: float
    documents: int
    bytes_read: int

    @property
    def documents_per_s(self) -> float | None:
        return self.documents / self.seconds if self.seconds > 0 else None

    @property
    def mb_per_s(self) -> float | None:
        return self.bytes_read / 1e6 / self.seconds if self.seconds > 0 else None


@attrs.frozen
class LoadRun:
    label: str
    sweep_on: bool
    clients: int
    wall_s: float
    requests: int
    errors: int
    first_error: str | None
    overall: Quantiles
    kinds: tuple[KindFigures, ...]
    server_cpu: float | None  # share of one core over the phase
    sweep: SweepPace | None  # the sweep's counters' deltas over the phase (phase B)

    @property
    def rps(self) -> float | None:
        ok = self.requests - self.errors
        return ok / self.wall_s if self.wall_s > 0 else None


@attrs.frozen
class PassRun:
    """The sweep's first pass over the vault in phase B."""

    completed: bool
    seconds: float  # phase B server healthy -> never_verified == 0 (or the timeout)
    documents: int  # GET /api/v1/integrity/status "documents" at the end
    never_verified: int  # at the end (0 when completed)
    swept: int  # the verifier's sweep.documents at the end
    swept_before: int  # ... when the server was first healthy (already swept then)
    bytes_read: int
    after_load: SweepPace | None  # end of the client load -> end of the pass
    failures: int
    mismatches: int

    @property
    def documents_per_s(self) -> float | None:
        return self.swept / self.seconds if self.seconds > 0 else None


# --------------------------------------------------------------------------- servers


class Vault:
    """One ``vault serve`` on the shared data folder, and the calls the bench makes."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        folder: Path,
        data_dir: Path,
        settings: dict[str, str],
        notes: list[str],
    ) -> None:
        env = {"VAULT_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", **settings}
        self.server: SpawnedServer = start_server(stack, folder, env, notes)
        self.url = self.server.url
        self.headers = {"X-Actor-Id": str(uuid.uuid4()), "X-Actor-Role": "admin"}
        self.http = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, headers=self.headers)
        stack.callback(self.http.close)
        self.first = self.sweep()  # the counters as soon as the server is healthy

    def alive(self) -> None:
        code = self.server.exited()
        if code is not None:
            raise BenchError(f"vault serve exited with {code}:\n{self.server.log_tail()}")

    def status(self) -> dict[str, Any]:
        r = self.http.get("/api/v1/integrity/status")
        if r.status_code != 200:
            raise BenchError(f"integrity status answered {describe_error(r)}")
        found: dict[str, Any] = r.json()
        return found

    def sweep(self) -> SweepCounters:
        r = self.http.get("/healthz/actors/verifier")
        try:
            sweep = r.json()["sweep"]
        except (ValueError, KeyError, TypeError):
            raise BenchError(f"verifier health without sweep: {describe_error(r)}") from None
        return SweepCounters(
            at=time.monotonic(),
            documents=int(sweep["documents"]),
            bytes_read=int(sweep["bytes_read"]),
            failures=int(sweep.get("failures", 0)),
            mismatches=int(sweep.get("mismatches", 0)),
        )

    def cpu(self) -> float | None:
        return process_cpu_seconds(self.server.pid)


def pace(before: SweepCounters, after: SweepCounters) -> SweepPace:
    return SweepPace(
        seconds=after.at - before.at,
        documents=after.documents - before.documents,
        bytes_read=after.bytes_read - before.bytes_read,
    )


# --------------------------------------------------------------------------- load


def drive(
    headers: dict[str, str], clients: int, job: Callable[[int], Job | None], budget: float
) -> tuple[list[Sample], float]:
    """``clients`` tasks take jobs 0, 1, 2, ... until ``job`` says None (or ``budget`` s)."""
    samples: list[Sample] = []
    counter = itertools.count()

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            found = job(next(counter))
            if found is None:
                return
            kind, expected, send = found
            started = time.perf_counter()
            try:
                r = await send(client)
            except httpx.HTTPError as exc:
                took = time.perf_counter() - started
                samples.append(Sample(kind, None, took, False, describe_error(None, exc)))
                continue
            took = time.perf_counter() - started
            ok = r.status_code == expected
            samples.append(Sample(kind, r.status_code, took, ok, None if ok else describe_error(r)))

    async def run() -> float:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
        async with contextlib.AsyncExitStack() as stack:
            pool = [
                await stack.enter_async_context(
                    httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout)
                )
                for _ in range(clients)
            ]
            started = time.perf_counter()
            with anyio.move_on_after(budget):
                async with anyio.create_task_group() as tg:
                    for client in pool:
                        tg.start_soon(worker, client)
            return time.perf_counter() - started

    wall = anyio.run(run, backend=CLIENT_BACKEND)
    return samples, wall


def _upload(url: str, entity: str, tag: str, index: int, payload: bytes) -> Send:
    form = {"entity_id": entity, "entity_type": "issuer", "document_type": "other"}
    body = multipart_body(form, prefix=document_prefix(tag, index), payload=payload)
    content = b"".join(body.chunks())

    def send(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return client.post(f"{url}{API}/upload", content=content, headers=body.headers)

    return send


def _list(url: str, entity: str) -> Send:
    def send(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return client.get(f"{url}{API}/{entity}", params={"limit": LIST_LIMIT})

    return send


def seed(
    vault: Vault, entities: Sequence[str], documents: int, payload: bytes, clients: int,
    budget: float,
) -> SeedRun:  # fmt: skip
    """``documents`` uploads of ``payload`` (each made unique), round-robin over ``entities``."""
    tag = uuid.uuid4().hex[:12]
    step = max(1, documents // 10)

    def job(index: int) -> Job | None:
        if index >= documents:
            return None
        if index and index % step == 0:
            progress(f"  seeding: {index:,}/{documents:,}")
        send = _upload(vault.url, entities[index % len(entities)], tag, index, payload)
        return "upload", 201, send

    samples, wall = drive(vault.headers, clients, job, budget)
    ok = sum(s.ok for s in samples)
    errors = [s.error for s in samples if not s.ok]
    return SeedRun(
        documents=documents, size_bytes=len(payload), clients=clients, entities=len(entities),
        wall_s=wall, ok=ok, errors=len(samples) - ok + max(0, documents - len(samples)),
        first_error=errors[0] if errors else None,
    )  # fmt: skip


def client_load(
    vault: Vault, label: str, *, sweep_on: bool, listed: Sequence[str], payload: bytes,
    clients: int, seconds: float,
) -> LoadRun:  # fmt: skip
    """For ``seconds``: even jobs upload ``payload`` to a fresh entity, odd ones list one of
    ``listed`` (``LIST_LIMIT`` a page); the latencies, server CPU and the sweep's progress."""
    tag = uuid.uuid4().hex[:12]
    entity = str(uuid.uuid4())
    end: list[float] = []  # set by the first job: the clients are connected by then

    def job(index: int) -> Job | None:
        if not end:
            end.append(time.monotonic() + seconds)
        if time.monotonic() >= end[0]:
            return None
        if index % 2 == 0:
            return "upload", 201, _upload(vault.url, entity, tag, index, payload)
        return "list", 200, _list(vault.url, listed[(index // 2) % len(listed)])

    before = vault.sweep() if sweep_on else None
    cpu = vault.cpu()
    samples, wall = drive(vault.headers, clients, job, seconds + REQUEST_TIMEOUT_S)
    cpu_after = vault.cpu()
    after = vault.sweep() if sweep_on else None
    vault.alive()
    kinds = tuple(
        KindFigures(
            kind=kind,
            requests=sum(s.kind == kind for s in samples),
            errors=sum(s.kind == kind and not s.ok for s in samples),
            latency=Quantiles.of([s.seconds for s in samples if s.kind == kind and s.ok]),
        )
        for kind in ("upload", "list")
    )
    errors = [s.error for s in samples if not s.ok]
    return LoadRun(
        label=label, sweep_on=sweep_on, clients=clients, wall_s=wall, requests=len(samples),
        errors=len(errors), first_error=errors[0] if errors else None,
        overall=Quantiles.of([s.seconds for s in samples if s.ok]), kinds=kinds,
        server_cpu=(
            (cpu_after - cpu) / wall if cpu is not None and cpu_after is not None and wall > 0
            else None
        ),
        sweep=pace(before, after) if before is not None and after is not None else None,
    )  # fmt: skip


def finish_pass(
    vault: Vault, first: SweepCounters, load_end: SweepCounters, timeout: float
) -> PassRun:
    """Poll the integrity status until never_verified is 0 (at most ``timeout`` s after the
    load); the pass is timed from ``first`` (the server just healthy)."""
    deadline = time.monotonic() + timeout
    step = 0
    while True:
        vault.alive()
        status = vault.status()
        never = int(status["never_verified"])
        if never == 0 or time.monotonic() > deadline:
            break
        step += 1
        if step % 15 == 0:
            progress(f"  pass: {never:,} of {int(status['documents']):,} still never verified")
        time.sleep(STATUS_POLL_S)
    last = vault.sweep()
    return PassRun(
        completed=never == 0,
        seconds=last.at - first.at,
        documents=int(status["documents"]),
        never_verified=never,
        swept=last.documents,
        swept_before=first.documents,
        bytes_read=last.bytes_read,
        after_load=pace(load_end, last),
        failures=last.failures,
        mismatches=last.mismatches,
    )
