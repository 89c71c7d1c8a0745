"""What the soak sends (the mix, sizes, counts) and the marks its verdicts use."""

import random
from collections.abc import Mapping, Sequence
from typing import Literal

from ops.bench.units import KB

Operation = Literal["upload", "list", "download_url", "verify", "archive"]
OPERATIONS: tuple[Operation, ...] = ("upload", "list", "download_url", "verify", "archive")

# Parts per hundred requests. Uploads outnumber archives, so the live set and
# the tables grow all through the run (by a fifth of the requests, net); the
# reads (list, download URL) are almost half, as in a vault's life; verifies
# re-read and re-hash stored bytes; archives write as much as uploads do.
DEFAULT_MIX: dict[Operation, int] = {
    "upload": 30,
    "list": 25,
    "download_url": 20,
    "verify": 15,
    "archive": 10,
}
# Uploads take these sizes in turn: small unique PDFs, as the vault mostly holds.
UPLOAD_SIZES = (1 * KB, 10 * KB, 100 * KB)
# Uploads go to these many entities in turn; a list asks for one at random.
ENTITIES = 32
LIST_LIMIT = 50
# Uploaded one at a time before the run (not counted), so that the first
# verify, download URL or archive has a document to work on.
SEED_DOCUMENTS = 64

DEFAULT_REQUESTS = 20_000
DEFAULT_CLIENTS = 8
DEFAULT_WARMUP = 2_000
DEFAULT_SEED = 1
DEFAULT_TIMEOUT_S = 1800.0

WINDOW_S = 60.0
# A last window with fewer answers than this joins the one before it: its p99
# would rest on fewer than ten samples above it.
MIN_TAIL_REQUESTS = 1000

# The marks. RSS and file descriptors compare the warm-up checkpoint with the
# end checkpoint: both taken with nothing in flight and the same client
# connections open (see ops/README.md for the slack).
RSS_GROWTH_LIMIT_MIB = 32.0
FD_SLACK = 4
P99_RATIO_LIMIT = 1.5


def apportion(total: int, weights: Mapping[Operation, int]) -> dict[Operation, int]:
    """Split total into whole counts proportional to weights (largest remainder; ties go
    to the operation listed first in OPERATIONS)."""
    if total < 0:
        raise ValueError(f"total must not be negative: {total}")
    ops = [op for op in OPERATIONS if weights.get(op, 0) > 0]
    if any(w < 0 for w in weights.values()) or not ops:
        raise ValueError("weights must be non-negative with at least one positive")
    whole = sum(weights[op] for op in ops)
    counts = {op: total * weights[op] // whole for op in ops}
    left = total - sum(counts.values())
    by_remainder = sorted(ops, key=lambda op: (-(total * weights[op] % whole), ops.index(op)))
    for op in by_remainder[:left]:
        counts[op] += 1
    return {op: counts.get(op, 0) for op in OPERATIONS}


def schedule(total: int, weights: Mapping[Operation, int], seed: int) -> list[Operation]:
    """The order of the run's requests: blocks of sum(weights) requests, each holding
    exactly weights[op] of every operation in a seeded random order, so the warm-up
    and every window see the same mix; a last partial block is apportioned."""
    rng = random.Random(seed)
    block = sum(weights.values())
    full, rest = divmod(total, block)
    out: list[Operation] = []
    for size in [block] * full + ([rest] if rest else []):
        counts = apportion(size, weights)
        chunk = [op for op in OPERATIONS for _ in range(counts[op])]
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def mix_shares(weights: Mapping[Operation, int]) -> dict[Operation, float]:
    """Each operation's share of the requests (0-1)."""
    whole = sum(weights.values())
    return {op: weights.get(op, 0) / whole for op in OPERATIONS}


def upload_size(upload_index: int, sizes: Sequence[int] = UPLOAD_SIZES) -> int:
    """The size of the n-th upload of the run: the sizes in turn."""
    return sizes[upload_index % len(sizes)]
