"""The soak's HTTP load: seed documents, then the mixed run with its checkpoints."""

import contextlib
import itertools
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable

import anyio
import httpx

from ops.bench.console import BenchError, progress
from ops.bench.load import CLIENT_BACKEND, Deadline, describe_error
from ops.bench.multipart import MultipartBody, document_prefix, multipart_body
from ops.bench.stats import Status
from ops.bench.units import format_size
from ops.soak.metrics import outbox_metrics, parse_metrics
from ops.soak.plan import Operation, schedule, upload_size
from ops.soak.probe import snapshot
from ops.soak.records import Checkpoint, OutboxMetrics, Plan, ProcSample, Sample

API = "/api/v1/documents"
REQUEST_TIMEOUT_S = 30.0
METRICS_TIMEOUT_S = 10.0
SAMPLE_INTERVAL_S = 1.0
# At a checkpoint, nothing is in flight: this long lets the publishers finish
# the drain the last commits nudged before /proc is read.
CHECKPOINT_SETTLE_S = 1.0
# After the run: how long to wait for the outbox to drain (the publishers
# sweep every 5 s), then how long to leave the server idle before the last
# look (past Trio's 10 s idle-thread timeout, so idle worker threads are gone).
OUTBOX_SETTLE_S = 15.0
OUTBOX_POLL_S = 0.5
IDLE_WAIT_S = 12.0
PROGRESS_EVERY = 2000


class DocumentPool:
    """The live documents the run may verify, download or archive.

    A document handed out by ``pick`` is busy until ``release``; ``take``
    (for an archive) removes a document that is not busy, so an archive never
    overtakes a verify or download URL of the same document still in flight.
    """

    TAKE_TRIES = 16

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._busy: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, document_id: str) -> None:
        self._ids.append(document_id)

    def pick(self, rng: random.Random) -> str | None:
        """A random live document, left in the pool and marked busy; None when empty."""
        if not self._ids:
            return None
        document_id = rng.choice(self._ids)
        self._busy[document_id] += 1
        return document_id

    def release(self, document_id: str) -> None:
        """The request ``pick`` handed document_id to has its answer."""
        self._busy[document_id] -= 1
        if self._busy[document_id] <= 0:
            del self._busy[document_id]

    def take(self, rng: random.Random) -> str | None:
        """A random live document that is not busy, removed from the pool; None when
        TAKE_TRIES random draws found only busy ones (or the pool is empty)."""
        for _ in range(self.TAKE_TRIES if self._ids else 0):
            index = rng.randrange(len(self._ids))
            if self._ids[index] in self._busy:
                continue
            self._ids[index], self._ids[-1] = self._ids[-1], self._ids[index]
            return self._ids.pop()
        return None


def _json_field(response: httpx.Response, name: str) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


class Soak:
    """One soak run against the server at url (pid for /proc, None without)."""

    def __init__(self, url: str, pid: int | None, plan: Plan, deadline: Deadline) -> None:
        self.url = url.rstrip("/")
        self.pid = pid
        self.plan = plan
        self.deadline = deadline
        self.order = schedule(plan.requests, plan.mix, plan.seed)
        self.rng = random.Random(plan.seed)
        self.payloads = {size: os.urandom(size) for size in plan.upload_sizes}
        self.run_tag = uuid.uuid4().hex[:12]
        self.counter = itertools.count()
        self.uploads = itertools.count()
        self.headers = {"X-Actor-Id": str(uuid.uuid4()), "X-Actor-Role": "admin"}
        self.entities = [str(uuid.uuid4()) for _ in range(plan.entities)]
        self.live = DocumentPool()
        self.samples: list[Sample] = []
        self.series: list[ProcSample] = []
        self.checkpoints: list[Checkpoint] = []
        self.first_errors: dict[str, str] = {}
        self.outbox_settled: OutboxMetrics | None = None
        self.outbox_settle_s: float | None = None
        self.notes: list[str] = []
        self.next_index = 0
        self.in_flight = 0
        self.started = 0.0
        self.resumed_s: float | None = None
        self.wall_s = 0.0
        self._warm = anyio.Event()
        self._checkpointing = False

    # ---- time

    def now(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.started

    # ---- documents

    def body(self) -> tuple[str, MultipartBody]:
        """The next upload: (its entity, its body), sizes and entities in turn."""
        n = next(self.uploads)
        entity = self.entities[n % len(self.entities)]
        payload = self.payloads[upload_size(n, self.plan.upload_sizes)]
        body = multipart_body(
            {"entity_id": entity, "entity_type": "issuer", "document_type": "other"},
            prefix=document_prefix(self.run_tag, next(self.counter)),
            payload=payload,
            filename="soak.pdf",
        )
        return entity, body

    def seed(self) -> None:
        """SEED_DOCUMENTS uploads one at a time, before the run and not counted."""
        count = self.plan.seed_documents
        progress(f"seeding {count} documents over {len(self.entities)} entities")
        with httpx.Client(headers=self.headers, timeout=REQUEST_TIMEOUT_S) as client:
            for _ in range(count):
                _, body = self.body()
                try:
                    r = client.post(
                        f"{self.url}{API}/upload", content=b"".join(body.chunks()),
                        headers=body.headers,
                    )  # fmt: skip
                except httpx.HTTPError as exc:
                    raise BenchError(f"seed upload failed: {describe_error(None, exc)}") from None
                document_id = _json_field(r, "id")
                if r.status_code != 201 or not isinstance(document_id, str):
                    raise BenchError(f"seed upload failed: {describe_error(r)}")
                self.live.add(document_id)

    # ---- one request

    async def perform(self, client: httpx.AsyncClient, op: Operation) -> tuple[Status, str | None]:
        """Send one request of kind op: (status, error text or None)."""
        if op == "upload":
            _, body = self.body()
            r = await client.post(
                f"{self.url}{API}/upload", content=b"".join(body.chunks()), headers=body.headers
            )
            document_id = _json_field(r, "id")
            if r.status_code == 201 and isinstance(document_id, str):
                self.live.add(document_id)
                return 201, None
            return self._wrong(r, 201, "no id")
        if op == "list":
            entity = self.rng.choice(self.entities)
            r = await client.get(
                f"{self.url}{API}/{entity}", params={"limit": self.plan.list_limit}
            )
            return self._check(r, 200, lambda: isinstance(_json_field(r, "documents"), list))
        if op == "archive":
            # Out of the pool before it is sent: nothing picks it from now on.
            document_id = self.live.take(self.rng)
            if document_id is None:
                return "no document", "no idle live document to archive"
            r = await client.delete(f"{self.url}{API}/{document_id}")
            return self._check(r, 200, lambda: _json_field(r, "status") == "archived")
        document_id = self.live.pick(self.rng)
        if document_id is None:
            return "no document", "no live document to work on"
        try:
            return await self._read(client, op, document_id)
        finally:
            self.live.release(document_id)

    async def _read(
        self, client: httpx.AsyncClient, op: Operation, document_id: str
    ) -> tuple[Status, str | None]:
        """A download URL or a verify of a live document."""
        if op == "download_url":
            r = await client.get(f"{self.url}{API}/{document_id}/download")
            return self._check(r, 200, lambda: isinstance(_json_field(r, "download_url"), str))
        if op == "verify":
            r = await client.post(f"{self.url}{API}/verify", json={"document_id": document_id})
            outcome = _json_field(r, "status")
            if r.status_code == 200 and outcome != "verified":
                return str(outcome), f"200 with status {outcome!r}"
            return self._check(r, 200, lambda: True)
        raise ValueError(f"not a read: {op}")

    def _check(
        self, r: httpx.Response, expected: int, body_ok: Callable[[], bool]
    ) -> tuple[Status, str | None]:
        if r.status_code == expected and body_ok():
            return expected, None
        return self._wrong(r, expected, "bad body")

    @staticmethod
    def _wrong(r: httpx.Response, expected: int, word: str) -> tuple[Status, str | None]:
        """A wrong answer: its status, or a word when the status was right (or another 2xx)."""
        if r.status_code == expected:
            return word, f"{r.status_code} with an unexpected body: {r.text[:200]!r}"
        if 200 <= r.status_code < 300:
            return f"{r.status_code}?", f"{r.status_code} where {expected} was expected"
        return r.status_code, describe_error(r)

    # ---- the run

    async def checkpoint(self, name: str, probe: httpx.AsyncClient) -> Checkpoint:
        """Read /metrics, then the server's /proc (the probe's connection is then open at
        every checkpoint alike)."""
        outbox = await self.read_outbox(probe)
        found = Checkpoint(
            name=name,
            at_s=self.now(),
            requests_done=len(self.samples),
            proc=snapshot(self.pid, kinds=True),
            outbox=outbox,
        )
        self.checkpoints.append(found)
        return found

    async def read_outbox(self, probe: httpx.AsyncClient) -> OutboxMetrics | None:
        try:
            r = await probe.get(f"{self.url}/metrics", timeout=METRICS_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.notes.append(f"GET /metrics failed: {describe_error(None, exc)}")
            return None
        if r.status_code != 200:
            self.notes.append(f"GET /metrics answered {r.status_code}")
            return None
        return outbox_metrics(parse_metrics(r.text))

    async def sampler(self) -> None:
        while True:
            found = snapshot(self.pid)
            if found is not None:
                self.series.append(
                    ProcSample(
                        at_s=self.now(), rss_bytes=found.rss_bytes, fds=found.fds,
                        threads=found.threads,
                    )
                )  # fmt: skip
            await anyio.sleep(SAMPLE_INTERVAL_S)

    async def worker(self, client: httpx.AsyncClient, probe: httpx.AsyncClient) -> None:
        total, warmup = len(self.order), self.plan.warmup
        while self.next_index < total and not self.deadline.expired():
            if self.next_index == warmup and not self._warm.is_set():
                if self.in_flight == 0 and not self._checkpointing:
                    # The last warm-up answer is in and every other client waits here.
                    self._checkpointing = True
                    await anyio.sleep(CHECKPOINT_SETTLE_S)
                    found = await self.checkpoint("warm-up", probe)
                    progress(f"warm-up done: {warmup} requests in {found.at_s:.1f} s")
                    self.resumed_s = self.now()
                    self._warm.set()
                else:
                    await self._warm.wait()
                continue
            index = self.next_index
            self.next_index += 1
            self.in_flight += 1
            op = self.order[index]
            started = time.perf_counter()
            try:
                status, error = await self.perform(client, op)
            except httpx.HTTPError as exc:
                status, error = None, describe_error(None, exc)
            finally:
                self.in_flight -= 1
            done = time.perf_counter()
            self.samples.append(
                Sample(
                    op=op, status=status, completed_s=done - self.started,
                    latency_s=done - started, warmup=index < warmup,
                )
            )  # fmt: skip
            if error is not None:
                self.first_errors.setdefault(f"{op} {'error' if status is None else status}", error)
            if len(self.samples) % PROGRESS_EVERY == 0:
                progress(f"{len(self.samples)}/{total} requests, {len(self.live)} live documents")

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
        async with httpx.AsyncClient(limits=limits) as probe:
            self.started = time.perf_counter()
            await self.checkpoint("before", probe)
            async with contextlib.AsyncExitStack() as stack:
                pool = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(headers=self.headers, limits=limits, timeout=timeout)
                    )
                    for _ in range(self.plan.clients)
                ]
                with anyio.move_on_after(self.deadline.remaining()):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self.sampler)
                        async with anyio.create_task_group() as workers:
                            for client in pool:
                                workers.start_soon(self.worker, client, probe)
                        self.wall_s = self.now()
                        await anyio.sleep(CHECKPOINT_SETTLE_S)
                        await self.checkpoint("end", probe)
                        tg.cancel_scope.cancel()
            if not any(c.name == "end" for c in self.checkpoints):
                self.wall_s = self.wall_s or self.now()
                self.notes.append("--timeout reached: the end checkpoint is not a quiet one")
                await self.checkpoint("end", probe)
            await self.settle(probe)

    async def settle(self, probe: httpx.AsyncClient) -> None:
        """Wait for the outbox to drain, then leave the server idle and look once more."""
        if self.deadline.remaining() < OUTBOX_SETTLE_S + IDLE_WAIT_S + 2 * METRICS_TIMEOUT_S:
            self.notes.append("no time left under --timeout for the outbox and idle looks")
            return
        started = time.perf_counter()
        figures = None
        while time.perf_counter() - started < OUTBOX_SETTLE_S:
            figures = await self.read_outbox(probe)
            if figures is None or not figures.pending:
                break
            await anyio.sleep(OUTBOX_POLL_S)
        self.outbox_settled = figures
        self.outbox_settle_s = time.perf_counter() - started
        progress(f"outbox read after {self.outbox_settle_s:.1f} s; idle for {IDLE_WAIT_S:g} s")
        await anyio.sleep(IDLE_WAIT_S)
        await self.checkpoint("idle", probe)

    def run(self) -> None:
        sizes = ", ".join(format_size(s) for s in self.plan.upload_sizes)
        progress(
            f"{len(self.order)} requests ({self.plan.warmup} warm-up), {self.plan.clients}"
            f" clients; uploads of {sizes}"
        )
        anyio.run(self._run, backend=CLIENT_BACKEND)
