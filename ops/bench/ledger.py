"""``python -m ops.bench ledger``: the verifiable ledger's figures against its targets.

    .venv/bin/python -m ops.bench ledger --baseline-src /tmp/bench-before   # or make bench-ledger

Three sections, each printed beside its target as ``met`` / ``NOT met``
(``not measured`` when it could not run):

1. *Integration rate*: ``--integration-leaves`` (20,000) pending leaves are
   written into a fresh store, then ``store.integrate_leaves(256, now)`` is
   timed until none is pending, on SQLite (a file in a temporary folder) and
   on PostgreSQL (a scratch database ``vault_bench_<tag>`` on the
   ``--pg-admin-url`` server, dropped afterwards). Target: >= 2,000 leaves/s
   on PostgreSQL.
2. *Receipts at scale*: a tree of ``--ledger-leaves`` (1,000,000) leaves on
   SQLite, built through the store's batch path (pending leaves in big
   transactions, ``integrate_leaves(--build-batch)``), one signed
   checkpoint, then ``--receipts`` receipts of random documents
   (``actors.log_reads._receipt``) and ``--consistency-proofs`` proofs from
   random sizes (``_consistency``); p50/p99, the proof sizes and how long
   the build took; the first few receipts and proofs are verified too
   (untimed). Target: receipt p50 < 5 ms.
3. *Uploads before and after*: the 100 KB uploads at 32 clients of the main
   benchmark against a server of the current tree and one of
   ``--baseline-src`` (a worktree of the previous release, run with this
   venv: ``git -C . worktree add /tmp/bench-before 15b7d6d``), both spawned
   embedded, ``--rounds`` rounds alternating between them; the medians of
   the rounds. Target: req/s at most 10 % below the baseline's. Without
   ``--baseline-src`` only the current server is measured.

Output: tables on stdout, or ``--json``; progress on stderr. A section
that fails (PostgreSQL unreachable, a server that does not start) is
reported as such and the others still run. Exit status 0 when no target
was missed and nothing failed, 1 when a target was missed, 2 when a
section failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ops.bench.backends import DEFAULT_PG_ADMIN_URL
from ops.bench.console import set_quiet
from ops.bench.ledger_tree import (
    CHECKED,
    UPLOAD_CLIENTS,
    integration_postgres,
    integration_sqlite,
    tree,
    uploads,
)
from ops.bench.plan import SMALL_SIZE
from ops.bench.records import (
    IntegrationRate,
    Latency,
    LedgerOutcome,
    LedgerReport,
    LedgerVerdict,
    Spread,
    TreeBench,
    UploadComparison,
    UploadSide,
)
from ops.bench.units import format_number, format_seconds, format_size, format_table

PG_LEAVES_PER_S = 2000.0
RECEIPT_P50_S = 0.005
UPLOAD_DROP = 0.10
FULL_TREE = 1_000_000


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


_COUNTS = (
    ("--integration-leaves", 20_000, "pending leaves integrated per store"),
    ("--ledger-leaves", FULL_TREE, "leaves of the tree the receipts are built in"),
    ("--build-batch", 1024, "integrate_leaves batch while building that tree"),
    ("--receipts", 2000, "receipts of random documents"),
    ("--consistency-proofs", 2000, "consistency proofs from random sizes"),
    ("--upload-requests", 640, f"100 KB uploads per round, {UPLOAD_CLIENTS} clients"),
    ("--rounds", 3, "upload rounds per server, alternating between them"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.bench ledger",
        description="Benchmark the verifiable ledger: integration rate, receipts and proofs"
        " at scale, and uploads before and after the ledger.",
    )
    for flag, default, text in _COUNTS:
        p.add_argument(flag, type=_positive, default=default, help=f"{text} (default {default:,})")
    p.add_argument(
        "--pg-admin-url",
        default=DEFAULT_PG_ADMIN_URL,
        help=f"PostgreSQL server and a user allowed to CREATE DATABASE"
        f" (default {DEFAULT_PG_ADMIN_URL})",
    )
    p.add_argument("--baseline-src", type=Path, help="source tree to compare uploads with")
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figures")
    p.add_argument("--no-tree", action="store_true", help="skip the receipts at scale")
    p.add_argument("--no-uploads", action="store_true", help="skip the upload comparison")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# --------------------------------------------------------------------------- verdicts


def change(after: float | None, before: float | None) -> float | None:
    """(after - before) / before, or None."""
    return None if after is None or not before else (after - before) / before


def _met(ok: bool) -> LedgerOutcome:
    return "met" if ok else "NOT met"


def verdicts(
    integration: Sequence[IntegrationRate],
    tree: TreeBench | None,
    uploads: UploadComparison | None,
    why: dict[str, str],
) -> list[LedgerVerdict]:
    """The three targets; ``why`` says why a section did not run."""
    out = []
    name = f"integration on PostgreSQL >= {PG_LEAVES_PER_S:,.0f} leaves/s (batch 256)"
    pg = next((r for r in integration if r.store == "postgresql"), None)
    if pg is None or pg.leaves_per_s is None:
        out.append(LedgerVerdict(name, "not measured", why.get("postgresql", "not run")))
    else:
        rate = pg.leaves_per_s
        out.append(LedgerVerdict(name, _met(rate >= PG_LEAVES_PER_S), f"{rate:,.0f} leaves/s"))

    name = f"receipt p50 < {RECEIPT_P50_S * 1000:g} ms at {FULL_TREE:,} leaves (SQLite)"
    if tree is None or tree.receipt.p50_s is None:
        out.append(LedgerVerdict(name, "not measured", why.get("tree", "not run")))
    else:
        text = f"{format_seconds(tree.receipt.p50_s)}"
        if tree.leaves != FULL_TREE:
            text += f" (at {tree.leaves:,} leaves, not {FULL_TREE:,})"
        out.append(LedgerVerdict(name, _met(tree.receipt.p50_s < RECEIPT_P50_S), text))

    name = (
        f"uploads {format_size(SMALL_SIZE)}, {UPLOAD_CLIENTS} clients: req/s within"
        f" {UPLOAD_DROP:.0%} of the baseline"
    )
    if uploads is None or uploads.baseline is None:
        out.append(LedgerVerdict(name, "not measured", why.get("uploads", "no --baseline-src")))
    else:
        delta = change(uploads.current.rps, uploads.baseline.rps)
        text = (
            f"{format_number(uploads.current.rps)} vs {format_number(uploads.baseline.rps)}"
            f" req/s ({_pct(delta)})"
        )
        errors = uploads.current.errors + uploads.baseline.errors
        if errors:
            text += f", {errors} non-201"
        ok = delta is not None and delta >= -UPLOAD_DROP and errors == 0
        out.append(LedgerVerdict(name, _met(ok), text))
    return out


# --------------------------------------------------------------------------- text


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def _spread(s: Spread) -> str:
    return f"{s.low:,} / {s.median:,.0f} / {s.high:,}"


def _latency(title: str, lat: Latency) -> list[str]:
    return [
        title,
        str(lat.samples),
        format_seconds(lat.p50_s),
        format_seconds(lat.p99_s),
        format_seconds(lat.max_s),
    ]


def render(report: LedgerReport) -> str:
    m = report.machine
    out = [
        "Document Vault ledger benchmark",
        f"  machine  {m.cpus} CPUs, {m.system}, Python {m.python}",
    ]
    if report.integration:
        out += ["", "Integration: integrate_leaves(256) over pending leaves"]
        rows = [
            [
                r.store,
                f"{r.leaves:,}",
                str(r.batches),
                format_seconds(r.fill_s),
                format_seconds(r.integrate_s),
                format_number(r.leaves_per_s, 0),
            ]
            for r in report.integration
        ]
        headers = ["store", "leaves", "batches", "fill", "integrate", "leaves/s"]
        out.append(format_table(headers, rows))
    t = report.tree
    if t is not None:
        out += [
            "",
            f"Tree of {t.leaves:,} leaves on SQLite (batch path, integrate batch {t.batch})",
        ]
        out.append(
            f"  build    {format_seconds(t.build_s)} ({format_number(t.build_leaves_per_s, 0)}"
            f" leaves/s): pending writes {format_seconds(t.insert_s)}, integration"
            f" {format_seconds(t.integrate_s)}"
        )
        out.append(
            f"  checked  the first {CHECKED} receipts (vault.offline.verify_receipt on the JSON)"
            f" and consistency proofs (verify_consistency), outside the timings"
        )
        rows = [
            _latency("receipt (_receipt)", t.receipt),
            _latency("receipt + tlog-proof + JSON", t.receipt_with_json),
            _latency("consistency (_consistency)", t.consistency),
        ]
        out.append(format_table(["call", "n", "p50", "p99", "max"], rows))
        s = t.sizes
        rows = [
            ["inclusion proof hashes", _spread(s.inclusion_hashes)],
            ["inclusion proof bytes", _spread(s.inclusion_bytes)],
            ["tlog-proof text bytes", _spread(s.tlog_proof_bytes)],
            ["receipt JSON bytes", _spread(s.receipt_json_bytes)],
            ["consistency proof hashes", _spread(s.consistency_hashes)],
            ["signed checkpoint bytes", f"{s.checkpoint_bytes:,}"],
        ]
        out.append(format_table(["proof size", "min / median / max"], rows))
    u = report.uploads
    if u is not None:
        out += [
            "",
            f"Uploads {format_size(u.size_bytes)}, {u.clients} clients, {u.requests}"
            f" a round; median of {len(u.current.rounds)} rounds",
        ]
        sides = [x for x in (u.current, u.baseline) if x is not None]
        rows = [
            [
                x.label,
                format_number(x.rps),
                format_seconds(x.p50_s),
                format_seconds(x.p99_s),
                str(x.errors),
                " ".join(format_number(r.rps, 0) for r in x.rounds),
            ]
            for x in sides
        ]
        if u.baseline is not None:
            rows.append(
                [
                    "change",
                    _pct(change(u.current.rps, u.baseline.rps)),
                    _pct(change(u.current.p50_s, u.baseline.p50_s)),
                    _pct(change(u.current.p99_s, u.baseline.p99_s)),
                    "",
                    "",
                ]
            )
        out.append(format_table(["server", "req/s", "p50", "p99", "non-201", "rounds req/s"], rows))
        out += [f"  {x.label}: {x.source} (imports {x.imported})" for x in sides]
    out += ["", "Targets"]
    width = max((len(v.name) for v in report.verdicts), default=0)
    out += [f"  {v.status:<12}  {v.name:<{width}}  {v.measured}" for v in report.verdicts]
    out += [f"  note: {n}" for n in report.notes]
    return "\n".join(out)


def to_json(report: LedgerReport) -> dict[str, Any]:
    from ops.bench.report import stats_json

    def side(x: UploadSide | None) -> dict[str, Any] | None:
        if x is None:
            return None
        return {
            "label": x.label,
            "source": x.source,
            "imported": x.imported,
            "rps": x.rps,
            "p50_s": x.p50_s,
            "p99_s": x.p99_s,
            "errors": x.errors,
            "rounds": [stats_json(r) for r in x.rounds],
        }

    u = report.uploads
    return {
        "machine": attrs.asdict(report.machine),
        "integration": [
            {**attrs.asdict(r), "leaves_per_s": r.leaves_per_s} for r in report.integration
        ],
        "tree": None
        if report.tree is None
        else {
            **attrs.asdict(report.tree),
            "build_s": report.tree.build_s,
            "build_leaves_per_s": report.tree.build_leaves_per_s,
        },
        "uploads": None
        if u is None
        else {
            "clients": u.clients,
            "size_bytes": u.size_bytes,
            "requests": u.requests,
            "current": side(u.current),
            "baseline": side(u.baseline),
            "rps_change": None if u.baseline is None else change(u.current.rps, u.baseline.rps),
        },
        "verdicts": [attrs.asdict(v) for v in report.verdicts],
        "notes": list(report.notes),
    }


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    from ops.bench.cli import machine

    args = parser().parse_args(argv)
    set_quiet(args.quiet)
    folder = Path(tempfile.mkdtemp(prefix="vault-bench-ledger-"))
    integration: list[IntegrationRate] = []
    tree_run: TreeBench | None = None
    upload_run: UploadComparison | None = None
    why: dict[str, str] = {}
    notes: list[str] = []

    def failed(section: str, exc: Exception) -> None:
        # One section's failure is reported; the others still run.
        why[section] = f"failed: {type(exc).__name__}: {exc}"
        notes.append(f"{section} {why[section]}")
        print(f"bench: {section} {why[section]}", file=sys.stderr)

    try:
        try:
            integration.append(integration_sqlite(folder, args.integration_leaves))
        except Exception as exc:
            failed("sqlite", exc)
        if args.no_postgres:
            why["postgresql"] = "--no-postgres"
        else:
            try:
                integration.append(integration_postgres(args.pg_admin_url, args.integration_leaves))
            except Exception as exc:
                failed("postgresql", exc)
        if args.no_tree:
            why["tree"] = "--no-tree"
        else:
            try:
                tree_run = tree(folder, args)
            except Exception as exc:
                failed("tree", exc)
            if tree_run is not None and tree_run.build_s > 600:
                notes.append(
                    f"building {tree_run.leaves:,} leaves took more than 10 minutes;"
                    " --ledger-leaves sets the size"
                )
        if args.no_uploads:
            why["uploads"] = "--no-uploads"
        else:
            try:
                upload_run = uploads(folder, args)
            except Exception as exc:
                failed("uploads", exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = LedgerReport(
        machine=machine(),
        integration=tuple(integration),
        tree=tree_run,
        uploads=upload_run,
        verdicts=tuple(verdicts(integration, tree_run, upload_run, why)),
        notes=tuple(notes),
    )
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    if any(v.status == "NOT met" for v in report.verdicts):
        return 1
    return 2 if any(w.startswith("failed") for w in why.values()) else 0
