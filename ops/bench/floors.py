"""The machine's floors: hashlib SHA-256 and an fsynced write of the same bytes."""

import hashlib
import os
import time
from pathlib import Path

from ops.bench.stats import percentile
from ops.bench.units import MB


def sha256_mbps(
    data: bytes, *, min_seconds: float = 0.5, min_rounds: int = 3, max_rounds: int = 500
) -> float:
    """hashlib SHA-256 MB/s over data: the best of at least min_rounds rounds and min_seconds.

    The best round, not the mean, because a floor is what the machine can do;
    a round slowed by a neighbour would flatter the server's ratio to it.
    """
    best, started, rounds = 0.0, time.perf_counter(), 0
    while rounds < max_rounds:
        begun = time.perf_counter()
        hashlib.sha256(data).digest()
        best = max(best, len(data) / MB / (time.perf_counter() - begun))
        rounds += 1
        if rounds >= min_rounds and time.perf_counter() - started >= min_seconds:
            break
    return best


def fsync_write_mbps(data: bytes, folder: Path, *, rounds: int = 3) -> float:
    """Median throughput of writing data to a new file in folder and fsyncing it."""
    rates = []
    path = folder / "floor.bin"
    for _ in range(rounds):
        started = time.perf_counter()
        with path.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        rates.append(len(data) / MB / (time.perf_counter() - started))
        path.unlink()
    result = percentile(rates, 50)
    assert result is not None
    return result
