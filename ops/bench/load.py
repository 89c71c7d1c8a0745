"""The HTTP load: sequential uploads and verifies, and the concurrent phases."""

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import attrs
import httpx

from ops.bench.console import BenchError, progress
from ops.bench.multipart import MultipartBody, document_prefix, multipart_body
from ops.bench.plan import (
    LARGE_SIZE,
    LIST_DOCUMENT_SIZE,
    LIST_ENTITY_DOCUMENTS,
    READ_CLIENTS,
    SMALL_CLIENTS,
    SMALL_SIZE,
)
from ops.bench.records import CpuShare, Reads, SizeMemory, SizeRun, SmallRun, Stats
from ops.bench.server import MemoryWindow, process_cpu_seconds
from ops.bench.stats import Sample, Status, summarize
from ops.bench.units import KB, MB, format_size

API = "/api/v1/documents"
LARGE_REQUEST_TIMEOUT_S = 300.0
SMALL_REQUEST_TIMEOUT_S = 30.0

# One request of a concurrent phase: (the worker's client, the request's index) -> answer.
Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def _client_backend() -> str:
    try:
        import trio  # noqa: F401  - only probing that anyio can use it
    except ImportError:
        return "asyncio"
    return "trio"


CLIENT_BACKEND = _client_backend()


class Deadline:
    """The run's global time budget."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout(self, cap: float) -> float:
        """A per-request timeout: cap, or what is left of the budget if less (at least 1 s)."""
        return max(1.0, min(cap, self.remaining()))


def describe_error(response: httpx.Response | None, exc: Exception | None = None) -> str:
    """'409 DUPLICATE_DOCUMENT: detail' from a problem+json answer, or the exception."""
    if exc is not None:
        return f"{type(exc).__name__}: {exc}"[:300]
    assert response is not None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]!r}"
    if isinstance(body, dict):
        code = body.get("error_code") or body.get("title")
        return f"{response.status_code} {code}: {body.get('detail')}"[:300]
    return f"{response.status_code} {str(body)[:200]}"


def _mbps(size: int, seconds: float | None) -> float | None:
    return size / MB / seconds if seconds else None


class Bench:
    """The measurements against one server.

    ``repeat`` is the uploads and verifies per size (None: 5, or 3 from
    LARGE_SIZE up), ``small_requests`` one count per SMALL_CLIENTS entry,
    ``read_requests`` the list and the download-URL requests each.
    """

    def __init__(
        self,
        url: str,
        pid: int | None,
        *,
        repeat: int | None,
        small_requests: Sequence[int],
        read_requests: int,
        timeout: float,
    ) -> None:
        self.url = url.rstrip("/")
        self.pid = pid
        self.repeat = repeat
        self.small_requests = tuple(small_requests)
        self.read_requests = read_requests
        self.deadline = Deadline(timeout)
        self.run_tag = uuid.uuid4().hex[:12]
        self.counter = itertools.count()
        self.headers = {"X-Actor-Id": str(uuid.uuid4()), "X-Actor-Role": "admin"}
        self.truncated: list[str] = []

    # ---- building documents

    def body(self, entity_id: str, payload: bytes) -> MultipartBody:
        return multipart_body(
            {"entity_id": entity_id, "entity_type": "issuer", "document_type": "other"},
            prefix=document_prefix(self.run_tag, next(self.counter)),
            payload=payload,
        )

    # ---- sequential requests

    def upload(
        self, client: httpx.Client, body: MultipartBody
    ) -> tuple[Status, float, str | None, str | None]:
        """(status, seconds, document id or None, error or None) for one streamed upload."""
        started = time.perf_counter()
        try:
            r = client.post(
                f"{self.url}{API}/upload",
                content=body.chunks(),
                headers=body.headers,
                timeout=self.deadline.timeout(LARGE_REQUEST_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            return None, time.perf_counter() - started, None, describe_error(None, exc)
        seconds = time.perf_counter() - started
        if r.status_code != 201:
            return r.status_code, seconds, None, describe_error(r)
        try:
            return r.status_code, seconds, str(r.json()["id"]), None
        except (ValueError, KeyError, TypeError):
            return "no id", seconds, None, f"201 without a document id: {r.text[:200]!r}"

    def verify(self, client: httpx.Client, document_id: str) -> tuple[Status, float, str | None]:
        """(status, seconds, error or None) for one verify; a 'mismatch' outcome is an error."""
        started = time.perf_counter()
        try:
            r = client.post(
                f"{self.url}{API}/verify",
                json={"document_id": document_id},
                timeout=self.deadline.timeout(LARGE_REQUEST_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            return None, time.perf_counter() - started, describe_error(None, exc)
        seconds = time.perf_counter() - started
        if r.status_code != 200:
            return r.status_code, seconds, describe_error(r)
        try:
            outcome = r.json()["status"]
        except (ValueError, KeyError, TypeError):
            outcome = None
        if outcome != "verified":
            return str(outcome), seconds, f"200 with status {outcome!r}"
        return 200, seconds, None

    def warm_up(self) -> None:
        """One small upload, verify and list; any failure stops the run with the server's answer."""
        entity = str(uuid.uuid4())
        with httpx.Client(headers=self.headers) as client:
            status, _, doc_id, error = self.upload(client, self.body(entity, os.urandom(4 * KB)))
            if doc_id is None:
                raise BenchError(f"warm-up upload failed: {error or status}")
            status, _, error = self.verify(client, doc_id)
            if error:
                raise BenchError(f"warm-up verify failed: {error}")
            r = client.get(f"{self.url}{API}/{entity}", params={"limit": 100}, timeout=10)
            if r.status_code != 200:
                raise BenchError(f"warm-up list failed: {describe_error(r)}")

    def sizes(self, payloads: Mapping[int, bytes]) -> list[SizeRun]:
        """Sequential uploads then verifies per size; memory windows around the largest size."""
        results = []
        largest = max(payloads)
        entity = str(uuid.uuid4())
        with httpx.Client(headers=self.headers) as client:
            for size, payload in payloads.items():
                repeat = self.repeat or (3 if size >= LARGE_SIZE else 5)
                progress(f"{format_size(size)}: {repeat} uploads, then {repeat} verifies")
                watch = size == largest and self.pid is not None

                window = MemoryWindow(self.pid if watch else None)
                window.start()
                uploads: list[Sample] = []
                ids: list[str] = []
                first_error = None
                for _ in range(repeat):
                    if self.deadline.expired():
                        self.truncated.append(f"{format_size(size)} uploads")
                        break
                    status, seconds, doc_id, error = self.upload(client, self.body(entity, payload))
                    uploads.append((status, seconds))
                    if doc_id:
                        ids.append(doc_id)
                    first_error = first_error or error
                upload_memory = window.finish()
                upload_stats = summarize(
                    uploads,
                    ok=lambda s: s == 201,
                    wall_s=sum(s for _, s in uploads),
                    planned=repeat,
                    first_error=first_error,
                )

                window = MemoryWindow(self.pid if watch else None)
                window.start()
                verifies: list[Sample] = []
                first_error = None
                for doc_id in ids:
                    if self.deadline.expired():
                        self.truncated.append(f"{format_size(size)} verifies")
                        break
                    status, seconds, error = self.verify(client, doc_id)
                    verifies.append((status, seconds))
                    first_error = first_error or error
                verify_memory = window.finish()
                verify_stats = summarize(
                    verifies,
                    ok=lambda s: s == 200,
                    wall_s=sum(s for _, s in verifies),
                    planned=repeat,
                    first_error=first_error,
                )

                results.append(
                    SizeRun(
                        size_bytes=size,
                        upload=upload_stats,
                        verify=verify_stats,
                        upload_mbps=_mbps(size, upload_stats.p50_s),
                        verify_mbps=_mbps(size, verify_stats.p50_s),
                        memory=SizeMemory(upload=upload_memory, verify=verify_memory),
                    )
                )
        return results

    # ---- concurrent requests

    def concurrent(
        self, clients: int, total: int, request: Request, ok_status: int, label: str
    ) -> Stats:
        """total requests shared by `clients` tasks, each with its own keep-alive connection."""
        if self.deadline.expired():
            self.truncated.append(label)
            return summarize([], ok=lambda s: False, wall_s=0.0, planned=total)
        samples: list[Sample] = []
        errors: list[str] = []
        issued = 0
        budget = self.deadline.remaining()

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued
            while issued < total:
                index = issued
                issued += 1
                started = time.perf_counter()
                try:
                    r = await request(client, index)
                except httpx.HTTPError as exc:
                    samples.append((None, time.perf_counter() - started))
                    errors.append(describe_error(None, exc))
                    continue
                samples.append((r.status_code, time.perf_counter() - started))
                if r.status_code != ok_status:
                    errors.append(describe_error(r))

        async def run() -> float:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            timeout = httpx.Timeout(SMALL_REQUEST_TIMEOUT_S)
            async with contextlib.AsyncExitStack() as stack:
                pool = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(headers=self.headers, limits=limits, timeout=timeout)
                    )
                    for _ in range(clients)
                ]
                started = time.perf_counter()
                with anyio.move_on_after(budget):
                    async with anyio.create_task_group() as tg:
                        for client in pool:
                            tg.start_soon(worker, client)
                return time.perf_counter() - started

        client_cpu, server_cpu = time.process_time(), process_cpu_seconds(self.pid)
        wall = anyio.run(run, backend=CLIENT_BACKEND)
        client_cpu = time.process_time() - client_cpu
        server_after = process_cpu_seconds(self.pid)
        if len(samples) < total:
            self.truncated.append(label)
        stats = summarize(
            samples,
            ok=lambda s: s == ok_status,
            wall_s=wall,
            planned=total,
            first_error=errors[0] if errors else None,
        )
        cpu = CpuShare(
            client=client_cpu / wall if wall > 0 else None,
            server=(
                (server_after - server_cpu) / wall
                if wall > 0 and server_cpu is not None and server_after is not None
                else None
            ),
        )
        return attrs.evolve(stats, cpu=cpu)

    def small_uploads(self, payload: bytes) -> list[SmallRun]:
        results = []
        for clients, total in zip(SMALL_CLIENTS, self.small_requests, strict=True):
            progress(f"{format_size(SMALL_SIZE)} uploads: {total} requests, {clients} client(s)")
            entity = str(uuid.uuid4())

            async def request(
                client: httpx.AsyncClient, _: int, entity: str = entity
            ) -> httpx.Response:
                body = self.body(entity, payload)
                return await client.post(
                    f"{self.url}{API}/upload", content=b"".join(body.chunks()), headers=body.headers
                )

            stats = self.concurrent(clients, total, request, 201, f"{clients}-client small uploads")
            results.append(SmallRun(clients=clients, size_bytes=SMALL_SIZE, stats=stats))
        return results

    def reads(self) -> Reads | None:
        """List and download-URL requests on an entity with LIST_ENTITY_DOCUMENTS documents;
        None when the time budget ran out before a document was seeded."""
        progress(f"seeding an entity with {LIST_ENTITY_DOCUMENTS} documents")
        entity = str(uuid.uuid4())
        payload = os.urandom(LIST_DOCUMENT_SIZE)
        ids: list[str] = []
        with httpx.Client(headers=self.headers) as client:
            for _ in range(LIST_ENTITY_DOCUMENTS):
                if self.deadline.expired():
                    break
                _, _, doc_id, error = self.upload(client, self.body(entity, payload))
                if doc_id is None:
                    raise BenchError(f"seeding the list entity failed: {error}")
                ids.append(doc_id)
            r = client.get(f"{self.url}{API}/{entity}", params={"limit": 100}, timeout=10)
            try:
                listed = len(r.json()["documents"]) if r.status_code == 200 else 0
            except (ValueError, KeyError, TypeError):
                listed = 0
        if not ids:
            self.truncated.append("reads")
            return None
        total = self.read_requests
        progress(f"list: {total} requests, {READ_CLIENTS} clients")

        async def list_request(client: httpx.AsyncClient, _: int) -> httpx.Response:
            return await client.get(f"{self.url}{API}/{entity}", params={"limit": 100})

        list_stats = self.concurrent(READ_CLIENTS, total, list_request, 200, "list")
        progress(f"download URL: {total} requests, {READ_CLIENTS} clients")

        async def url_request(client: httpx.AsyncClient, index: int) -> httpx.Response:
            return await client.get(f"{self.url}{API}/{ids[index % len(ids)]}/download")

        url_stats = self.concurrent(READ_CLIENTS, total, url_request, 200, "download URL")
        return Reads(
            clients=READ_CLIENTS,
            entity_documents=listed,
            listing=list_stats,
            download_url=url_stats,
        )
