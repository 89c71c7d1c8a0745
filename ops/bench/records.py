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


# --------------------------------------------------------------------------- ledger

LedgerOutcome = Literal["met", "NOT met", "not measured"]


@attrs.frozen
class IntegrationRate:
    """``integrate_leaves`` over a store's pending leaves, ``batch`` at a time."""

    store: str  # "sqlite" or "postgresql"
    leaves: int
    batch: int
    batches: int
    fill_s: float  # writing the pending leaves (not part of the rate)
    integrate_s: float

    @property
    def leaves_per_s(self) -> float | None:
        return self.leaves / self.integrate_s if self.integrate_s > 0 else None


@attrs.frozen
class Latency:
    """Percentiles of one blocking call, in seconds."""

    samples: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


@attrs.frozen
class Spread:
    """Smallest, median and largest of a figure over the samples."""

    low: int
    median: float
    high: int


@attrs.frozen
class ProofSizes:
    """What a receipt and a consistency proof weigh at the tree's size."""

    inclusion_hashes: Spread
    inclusion_bytes: Spread
    tlog_proof_bytes: Spread
    receipt_json_bytes: Spread
    consistency_hashes: Spread
    checkpoint_bytes: int  # the signed note


@attrs.frozen
class TreeBench:
    """A tree built through the store's batch path, then receipts and proofs under it."""

    leaves: int
    batch: int
    insert_s: float  # writing the leaves pending
    integrate_s: float
    receipt: Latency  # actors.log_reads._receipt
    receipt_with_json: Latency  # the same, plus the tlog-proof and the route's JSON
    consistency: Latency  # actors.log_reads._consistency
    sizes: ProofSizes

    @property
    def build_s(self) -> float:
        return self.insert_s + self.integrate_s

    @property
    def build_leaves_per_s(self) -> float | None:
        return self.leaves / self.build_s if self.build_s > 0 else None


@attrs.frozen
class UploadSide:
    """Rounds of the small-upload phase against one server; the summary is their median."""

    label: str  # "current" or "baseline"
    source: str  # the source tree the server ran from
    imported: str  # where its ``vault`` package was imported from
    rounds: tuple[Stats, ...]

    def _median(self, values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(sorted(known)[(len(known) - 1) // 2]) if known else None

    @property
    def rps(self) -> float | None:
        return self._median([s.rps for s in self.rounds])

    @property
    def p50_s(self) -> float | None:
        return self._median([s.p50_s for s in self.rounds])

    @property
    def p99_s(self) -> float | None:
        return self._median([s.p99_s for s in self.rounds])

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.rounds)


@attrs.frozen
class UploadComparison:
    """The same upload phase against the current tree's server and a baseline's."""

    clients: int
    size_bytes: int
    requests: int  # per round
    current: UploadSide
    baseline: UploadSide | None


@attrs.frozen
class LedgerVerdict:
    name: str
    status: LedgerOutcome
    measured: str


@attrs.frozen
class LedgerReport:
    machine: Machine
    integration: tuple[IntegrationRate, ...]
    tree: TreeBench | None
    uploads: UploadComparison | None
    verdicts: tuple[LedgerVerdict, ...]
    notes: tuple[str, ...] = ()
