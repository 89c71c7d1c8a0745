"""The benchmark's figures as typed, immutable records.

Each measurement is one record; ``report.report_json`` turns them into the
``--json`` form. Durations are seconds, sizes and memory bytes, rates MB/s
(10**6 bytes) or successful requests per second of wall time.
"""

from typing import Literal

import attrs

from ops.bench.plan import Targets

Outcome = Literal["PASS", "FAIL", "SKIP"]
MemoryMethod = Literal["clear_refs", "vmhwm"]


@attrs.frozen
class CpuShare:
    """CPU seconds over a phase's wall time: 1.0 is one core busy throughout."""

    client: float | None  # the benchmark's own process
    server: float | None  # the server's process tree; None without its pid


@attrs.frozen
class Stats:
    """Requests of one phase: counts, percentiles of the successful ones, rate."""

    planned: int
    requests: int
    ok: int
    errors: int
    statuses: dict[str, int]  # "201", "503", "no id", "error" (no answer) -> count
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    wall_s: float
    rps: float | None
    first_error: str | None = None
    # Measured for the concurrent phases that ran; None for sequential ones.
    cpu: CpuShare | None = None

    @property
    def complete(self) -> bool:
        """Every planned request was sent."""
        return self.requests == self.planned


@attrs.frozen
class MemoryFigures:
    """Peak RSS growth of the server's processes over one window, in bytes."""

    baseline_bytes: int
    peak_bytes: int
    growth_bytes: int
    rss_after_bytes: int
    method: MemoryMethod  # clear_refs: VmHWM was reset at the start; vmhwm: it was not
    processes: int


@attrs.frozen
class SizeMemory:
    """The memory windows around one size's uploads and verifies (none without a pid)."""

    upload: MemoryFigures | None = None
    verify: MemoryFigures | None = None

    def windows(self) -> list[tuple[str, MemoryFigures]]:
        """(phase, figures) for the windows measured, uploads first."""
        pairs = (("upload", self.upload), ("verify", self.verify))
        return [(phase, figures) for phase, figures in pairs if figures is not None]


@attrs.frozen
class SizeRun:
    """Sequential uploads, then verifies of what was uploaded, at one document size."""

    size_bytes: int
    upload: Stats
    verify: Stats
    upload_mbps: float | None  # size / upload p50
    verify_mbps: float | None  # size / verify p50
    memory: SizeMemory = SizeMemory()


@attrs.frozen
class SmallRun:
    """Small uploads from a number of concurrent clients."""

    clients: int
    size_bytes: int
    stats: Stats


@attrs.frozen
class Reads:
    """List and download-URL requests against one entity's documents."""

    clients: int
    entity_documents: int  # what the list route returned for the entity
    listing: Stats
    download_url: Stats


@attrs.frozen
class Floor:
    """What this machine does with the same bytes without the server."""

    size_bytes: int
    sha256_mbps: float  # hashlib SHA-256, best round
    fsync_write_mbps: float  # write to a new file and fsync it, median round


@attrs.frozen
class Measurements:
    """Every figure of a run; the verdicts are drawn from these alone."""

    floors: tuple[Floor, ...] = ()
    sizes: tuple[SizeRun, ...] = ()
    small: tuple[SmallRun, ...] = ()
    reads: Reads | None = None  # None when no document could be seeded in time


@attrs.frozen
class Machine:
    cpus: int | None
    system: str
    python: str
    client_backend: str  # the async library of the concurrent phases


@attrs.frozen
class Server:
    """The server measured: where, which process, how it came to run, how it ended."""

    url: str
    pid: int | None
    mode: str  # "external", or "spawned, <backends>"
    exit_code: int | None = None  # a spawned server's, after SIGTERM (negative: signal)


@attrs.frozen
class Backends:
    """What a spawned ``postgres-s3`` server ran on, as shown in the report."""

    database: str  # URL, password masked
    s3: str
    kms: str


@attrs.frozen
class Verdict:
    """One target: its description, PASS/FAIL/SKIP, and what was measured."""

    name: str
    status: Outcome
    measured: str


@attrs.frozen
class Report:
    """A finished run: the context, the figures and what they mean."""

    profile: str
    targets: Targets
    machine: Machine
    server: Server
    measurements: Measurements
    verdicts: tuple[Verdict, ...]
    backends: Backends | None = None
    notes: tuple[str, ...] = ()
