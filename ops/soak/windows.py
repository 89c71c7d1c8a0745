"""The run's samples cut into windows, per operation, and the trend of a series."""

from collections import Counter
from collections.abc import Sequence

from ops.bench.records import Stats
from ops.bench.stats import Status, percentile, summarize
from ops.soak.plan import MIN_TAIL_REQUESTS, OPERATIONS, WINDOW_S, Operation, mix_shares
from ops.soak.records import OperationRun, ProcSample, Sample, Window


def answered_ok(status: Status) -> bool:
    """The answer each operation expects: 201 for an upload, 200 otherwise; the load
    turns any other 2xx (or a 2xx with a wrong body) into a word, which is not ok."""
    return status in (200, 201)


def _stats(samples: Sequence[Sample], span_s: float) -> Stats:
    return summarize(
        [(s.status, s.latency_s) for s in samples],
        ok=answered_ok,
        wall_s=span_s,
        planned=len(samples),
    )


def window_bounds(
    start_s: float, end_s: float, width_s: float = WINDOW_S
) -> list[tuple[float, float]]:
    """[start, end) spans of width_s from start_s, the last one ending at end_s."""
    bounds = []
    low = start_s
    while low < end_s:
        bounds.append((low, min(low + width_s, end_s)))
        low += width_s
    return bounds


def _last_reading(series: Sequence[ProcSample], end_s: float) -> ProcSample | None:
    before = [p for p in series if p.at_s <= end_s]
    return before[-1] if before else None


def windows(
    samples: Sequence[Sample],
    *,
    resumed_s: float | None,
    series: Sequence[ProcSample] = (),
    width_s: float = WINDOW_S,
    min_tail: int = MIN_TAIL_REQUESTS,
) -> list[Window]:
    """A 'warm-up' window of the warm-up requests, then numbered windows of width_s of the
    others by the time of their answer, counted from resumed_s (when the run went on after
    the warm-up checkpoint); a last window with fewer than min_tail answers joins the one
    before it. Each window carries the sampler's last reading in it."""
    out: list[Window] = []
    warm = [s for s in samples if s.warmup]
    rest = sorted((s for s in samples if not s.warmup), key=lambda s: s.completed_s)
    if warm:
        end = max(s.completed_s for s in warm)
        out.append(_window("warm-up", warm, 0.0, end, series))
    if not rest:
        return out
    start = resumed_s if resumed_s is not None else rest[0].completed_s
    finish = rest[-1].completed_s
    groups: list[tuple[float, float, list[Sample]]] = []
    for low, high in window_bounds(start, finish, width_s) or [(start, finish)]:
        groups.append((low, high, [s for s in rest if low <= s.completed_s < high]))
    # Answers at the very end (and any before resumed_s) belong to the nearest window.
    groups[-1][2].extend(s for s in rest if s.completed_s >= groups[-1][1])
    groups[0][2][:0] = [s for s in rest if s.completed_s < start]
    if len(groups) > 1 and len(groups[-1][2]) < min_tail:
        low, _, inside = groups[-2]
        _, high, tail = groups.pop()
        groups[-1] = (low, high, inside + tail)
    for number, (low, high, inside) in enumerate(groups, 1):
        out.append(_window(str(number), inside, low, high, series))
    return out


def _window(
    label: str, samples: Sequence[Sample], start: float, end: float, series: Sequence[ProcSample]
) -> Window:
    reading = _last_reading(series, end)
    ops = sorted({s.op for s in samples}, key=OPERATIONS.index)
    return Window(
        label=label,
        start_s=start,
        end_s=end,
        stats=_stats(samples, end - start),
        rss_bytes=reading.rss_bytes if reading else None,
        fds=reading.fds if reading else None,
        threads=reading.threads if reading else None,
        op_p99_s={
            op: percentile(
                [s.latency_s for s in samples if s.op == op and answered_ok(s.status)], 99
            )
            for op in ops
        },
    )


def operations(
    samples: Sequence[Sample], mix: dict[Operation, int], wall_s: float
) -> list[OperationRun]:
    """Each operation of the mix over the whole run, warm-up included (rps over wall_s)."""
    shares = mix_shares(mix)
    return [
        OperationRun(
            op=op, share=shares[op], stats=_stats([s for s in samples if s.op == op], wall_s)
        )
        for op in OPERATIONS
        if mix.get(op, 0) > 0
    ]


def error_statuses(samples: Sequence[Sample]) -> dict[str, int]:
    """'upload 503', 'verify mismatch', 'list error' (no answer) -> how many, sorted."""
    found = Counter(
        f"{s.op} {'error' if s.status is None else s.status}"
        for s in samples
        if not answered_ok(s.status)
    )
    return dict(sorted(found.items()))


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None under two points
    or when they share one time."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
