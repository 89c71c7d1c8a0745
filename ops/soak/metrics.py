"""The outbox's figures: from the Prometheus text of /metrics, and from a SQLite file."""

import contextlib
import math
import sqlite3
from pathlib import Path

from ops.soak.records import OutboxMetrics, OutboxRows

PENDING = "vault_outbox_pending"
PARKED = "vault_outbox_parked"
DELIVERED = "vault_outbox_delivered_total"
FAILED = "vault_outbox_failed_total"
# Exported once delivered rows are pruned; absent before that.
PRUNED = "vault_outbox_pruned_total"


def parse_metrics(text: str) -> dict[str, float]:
    """Each metric name of a Prometheus text exposition with its samples summed over
    their labels; comments, blank and unreadable lines are skipped."""
    totals: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            # Label values are quoted and may hold '}': the value follows the last one.
            _, _, after = rest.rpartition("}")
        else:
            name, _, after = line.partition(" ")
        fields = after.split()
        if not name or not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[name.strip()] = totals.get(name.strip(), 0.0) + value
    return totals


def outbox_metrics(totals: dict[str, float]) -> OutboxMetrics:
    """The outbox figures of parsed /metrics; a figure the server does not export is None."""
    return OutboxMetrics(
        pending=totals.get(PENDING),
        parked=totals.get(PARKED),
        delivered_total=totals.get(DELIVERED),
        failed_total=totals.get(FAILED),
        pruned_total=totals.get(PRUNED),
    )


def count_outbox_rows(database: Path) -> OutboxRows | None:
    """Outbox rows by state (and documents) in a vault's SQLite file, read-only; None when
    the file is missing or is not a vault's."""
    if not database.is_file():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        ) as db:
            row = db.execute(
                "SELECT count(*),"
                " coalesce(sum(delivered_at IS NULL AND parked_at IS NULL), 0),"
                " coalesce(sum(delivered_at IS NOT NULL), 0),"
                " coalesce(sum(parked_at IS NOT NULL), 0)"
                " FROM outbox"
            ).fetchone()
            (documents,) = db.execute("SELECT count(*) FROM documents").fetchone()
    except sqlite3.Error:
        return None
    total, pending, delivered, parked = (int(v) for v in row)
    return OutboxRows(
        total=total, pending=pending, delivered=delivered, parked=parked, documents=int(documents)
    )


def folder_bytes(folder: Path) -> int:
    """The sizes of the regular files under folder, added up."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total
