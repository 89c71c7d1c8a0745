"""Percentiles and the statistics of a phase's (status, seconds) samples."""

import math
from collections import Counter
from collections.abc import Callable, Sequence

from ops.bench.records import Stats

# A request's outcome: the HTTP status, a word for a wrong 2xx answer, or None
# when no answer came (connection error, timeout).
Status = int | str | None
Sample = tuple[Status, float]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The pct-th percentile (0-100) of values, interpolating between ranks; None if empty."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile out of range: {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(
    samples: Sequence[Sample],
    *,
    ok: Callable[[Status], bool],
    wall_s: float,
    planned: int,
    first_error: str | None = None,
) -> Stats:
    """Counts, percentiles and rate of (status, seconds) samples; None is a transport error."""
    good = [seconds for status, seconds in samples if ok(status)]
    statuses = Counter("error" if status is None else str(status) for status, _ in samples)
    return Stats(
        planned=planned,
        requests=len(samples),
        ok=len(good),
        errors=len(samples) - len(good),
        statuses=dict(sorted(statuses.items())),
        p50_s=percentile(good, 50),
        p95_s=percentile(good, 95),
        p99_s=percentile(good, 99),
        wall_s=wall_s,
        rps=len(good) / wall_s if wall_s > 0 and good else None,
        first_error=first_error,
    )
