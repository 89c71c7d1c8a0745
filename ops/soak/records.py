"""The soak's figures as typed, immutable records.

Times are seconds since the run began (the first request of the soak, after
the seed uploads); memory is bytes; latencies are seconds.
"""

import attrs

from ops.bench.records import Machine, Server, Stats, Verdict
from ops.bench.stats import Status
from ops.soak.plan import Operation


@attrs.frozen
class Sample:
    """One request of the run."""

    op: Operation
    status: Status  # the HTTP status, a word for a wrong 2xx answer, None without an answer
    completed_s: float  # when the answer came
    latency_s: float
    warmup: bool


@attrs.frozen
class ProcFigures:
    """The server's process tree at one moment, from /proc."""

    rss_bytes: int
    fds: int | None  # None when /proc/PID/fd cannot be read
    threads: int
    processes: int
    fd_kinds: dict[str, int] = attrs.field(factory=dict)  # see probe.fd_kind
    # Sockets whose peer has closed, which the server releases only at its
    # keep-alive timeout; None when the descriptors were not sorted by kind.
    close_wait: int | None = None

    @property
    def held_fds(self) -> int | None:
        """Descriptors not counting the sockets in CLOSE-WAIT."""
        return None if self.fds is None else self.fds - (self.close_wait or 0)


@attrs.frozen
class ProcSample:
    """One reading of the background sampler (once a second)."""

    at_s: float
    rss_bytes: int
    fds: int | None
    threads: int


@attrs.frozen
class OutboxMetrics:
    """The outbox as /metrics shows it, summed over destinations (None: not exported)."""

    pending: float | None
    parked: float | None
    delivered_total: float | None  # since the process started
    failed_total: float | None
    pruned_total: float | None  # only once pruning exports vault_outbox_pruned_total


@attrs.frozen
class OutboxRows:
    """Rows of the ``outbox`` table of a spawned server's SQLite file, by state."""

    total: int
    pending: int
    delivered: int
    parked: int
    documents: int  # rows of ``documents``, for scale


@attrs.frozen
class Checkpoint:
    """The server at a moment the run stops to look: before, warm-up, end, idle."""

    name: str
    at_s: float
    requests_done: int
    proc: ProcFigures | None  # None without a pid
    outbox: OutboxMetrics | None  # None when /metrics did not answer


@attrs.frozen
class Window:
    """Requests answered in one window of the run."""

    label: str  # "warm-up", then "1", "2", ...
    start_s: float
    end_s: float
    stats: Stats  # rps over the window's span
    rss_bytes: int | None = None  # the sampler's last reading in the window
    fds: int | None = None
    threads: int | None = None
    op_p99_s: dict[str, float | None] = attrs.field(factory=dict)  # per operation


@attrs.frozen
class OperationRun:
    """One operation over the whole run (warm-up included)."""

    op: Operation
    share: float  # of the planned requests
    stats: Stats


@attrs.frozen
class Plan:
    """What the run was asked to do."""

    requests: int
    clients: int
    warmup: int
    seed: int
    mix: dict[Operation, int]
    upload_sizes: tuple[int, ...]
    entities: int
    list_limit: int
    seed_documents: int


@attrs.frozen
class SoakMeasurements:
    """Every figure of a run; the verdicts are drawn from these alone."""

    wall_s: float = 0.0
    windows: tuple[Window, ...] = ()
    operations: tuple[OperationRun, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    series: tuple[ProcSample, ...] = ()  # the sampler's readings, once a second
    statuses: dict[str, int] = attrs.field(factory=dict)  # "upload 503" -> count (errors only)
    first_errors: dict[str, str] = attrs.field(factory=dict)  # the same keys -> first text
    outbox_settled: OutboxMetrics | None = None  # once pending reached 0, or the wait ran out
    outbox_settle_s: float | None = None
    outbox_rows: OutboxRows | None = None  # spawned SQLite server, after it stopped
    data_bytes: int | None = None  # spawned server's data folder, after it stopped
    truncated: bool = False  # --timeout ended the run before every request was sent

    def checkpoint(self, name: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)

    @property
    def requests(self) -> int:
        return sum(o.stats.requests for o in self.operations)

    @property
    def errors(self) -> int:
        return sum(o.stats.errors for o in self.operations)


@attrs.frozen
class SoakReport:
    """A finished run: the context, the figures and what they mean."""

    plan: Plan
    machine: Machine
    server: Server
    measurements: SoakMeasurements
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
