"""``python -m ops.bench sweep``: what the integrity sweep costs clients, and its pace.

1. Seed ``--documents`` documents of ``--document-size`` bytes (over
   ENTITIES entities, ``--seed-clients`` concurrent uploads) into a
   ``vault serve`` with the sweep off (``INTEGRITY_SWEEP_PERIOD_HOURS=0``)
   on a temporary data folder.
2. Phase A: restart on the same folder, sweep still off; ``--clients``
   clients alternate 100 KB uploads and list requests (a seeded entity,
   100 a page) for ``--seconds``; per-request latency.
3. Phase B: restart with ``INTEGRITY_SWEEP_PERIOD_HOURS=1`` (every
   never-verified document is due at once) and
   ``INTEGRITY_SWEEP_MAX_MB_PER_SECOND=--mb-per-second``; the same load
   while the sweep runs; the ratio p99(B)/p99(A) against ``--max-ratio``
   (1.2: within 20 %), and the sweep's pace over the load from the
   verifier's health (``sweep.documents``, ``sweep.bytes_read``). Then
   GET /api/v1/integrity/status until ``never_verified`` is 0 (at most
   ``--pass-timeout``): the time of a full pass, from the phase B server
   being healthy.

Each phase starts with a short unrecorded warm-up (``--warmup`` s) of the
same load. Tables on stdout (or ``--json``), progress on stderr; exit 2 if
the run failed, 1 if the latency target was not met, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx

from ops.bench.console import BenchError, progress, set_quiet
from ops.bench.outside_run import Quantiles
from ops.bench.plan import SMALL_SIZE
from ops.bench.sweep_run import (
    LoadRun,
    PassRun,
    SeedRun,
    SweepPace,
    Vault,
    client_load,
    finish_pass,
    seed,
)
from ops.bench.units import KB, format_size, format_table, parse_size

ENTITIES = 100
SEED_BUDGET_S = 3600.0
OFF = {"INTEGRITY_SWEEP_PERIOD_HOURS": "0"}


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if size < 1024:
        raise argparse.ArgumentTypeError("at least 1 KiB")
    return size


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.bench sweep",
        description="Client latency with and without the integrity sweep, the sweep's pace"
        " and the time of a full pass.",
    )
    p.add_argument("--documents", type=_positive, default=10_000,
                   help="documents seeded before the phases (default 10000)")
    p.add_argument("--document-size", type=_size, default=10 * KB,
                   help="size of each seeded document (default 10KB)")
    p.add_argument("--seed-clients", type=_positive, default=16,
                   help="concurrent uploads while seeding (default 16)")
    p.add_argument("--clients", type=_positive, default=8,
                   help="clients of the load in phases A and B (default 8)")
    p.add_argument("--seconds", type=_positive_float, default=20.0,
                   help="length of each phase's load (default 20)")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="unrecorded load before each phase, seconds (default 2; 0: none)")
    p.add_argument("--mb-per-second", type=_positive_float, default=50.0,
                   help="INTEGRITY_SWEEP_MAX_MB_PER_SECOND in phase B (default 50)")
    p.add_argument("--max-ratio", type=_positive_float, default=1.2,
                   help="target: p99(B)/p99(A) at most this (default 1.2)")
    p.add_argument("--pass-timeout", type=_positive_float, default=600.0,
                   help="seconds after the load to wait for the pass to finish (default 600)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p  # fmt: skip


# --------------------------------------------------------------------------- the run


@attrs.frozen
class SweepReport:
    machine: Any  # ops.bench.records.Machine
    documents: int
    document_size: int
    mb_per_second: float
    max_ratio: float
    seeded: SeedRun | None
    phase_a: LoadRun | None
    phase_b: LoadRun | None
    full_pass: PassRun | None
    failure: str | None
    notes: tuple[str, ...]
    wall_s: float

    @property
    def ratio(self) -> float | None:
        if self.phase_a is None or self.phase_b is None:
            return None
        a, b = self.phase_a.overall.p99_ms, self.phase_b.overall.p99_ms
        return b / a if a and b is not None else None


def _phase(
    stack: contextlib.ExitStack, args: argparse.Namespace, folder: Path, data: Path,
    label: str, settings: dict[str, str], listed: Sequence[str], notes: list[str],
) -> tuple[Vault, LoadRun]:  # fmt: skip
    sweep_on = settings.get("INTEGRITY_SWEEP_PERIOD_HOURS", "0") != "0"
    vault = Vault(stack, folder, data, settings, notes)
    payload = os.urandom(SMALL_SIZE)
    if args.warmup > 0:
        progress(f"{label}: {args.warmup:g} s warm-up")
        client_load(vault, label, sweep_on=False, listed=listed, payload=payload,
                    clients=args.clients, seconds=args.warmup)  # fmt: skip
    progress(f"{label}: {args.clients} clients, 100 KB uploads and lists, {args.seconds:g} s")
    run = client_load(vault, label, sweep_on=sweep_on, listed=listed, payload=payload,
                      clients=args.clients, seconds=args.seconds)  # fmt: skip
    return vault, run


def main(argv: Sequence[str] | None = None) -> int:
    from ops.bench.cli import machine

    args = parser().parse_args(argv)
    set_quiet(args.quiet)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="vault-bench-sweep-"))
    data = folder / "data"
    data.mkdir()
    notes: list[str] = []
    failure: str | None = None
    seeded: SeedRun | None = None
    phase_a: LoadRun | None = None
    phase_b: LoadRun | None = None
    full_pass: PassRun | None = None
    entities = [str(uuid.uuid4()) for _ in range(min(ENTITIES, args.documents))]
    on = {
        "INTEGRITY_SWEEP_PERIOD_HOURS": "1",
        "INTEGRITY_SWEEP_MAX_MB_PER_SECOND": f"{args.mb_per_second:g}",
    }
    try:
        with contextlib.ExitStack() as stack:
            vault = Vault(stack, folder / "seed", data, OFF, notes)
            progress(f"seeding {args.documents:,} documents of {format_size(args.document_size)}"
                     f" with {args.seed_clients} clients (sweep off)")  # fmt: skip
            seeded = seed(vault, entities, args.documents, os.urandom(args.document_size),
                          args.seed_clients, SEED_BUDGET_S)  # fmt: skip
            vault.alive()
            if seeded.ok == 0:
                raise BenchError(f"seeding failed: {seeded.first_error}")
            if seeded.errors:
                notes.append(f"seeding: {seeded.errors} uploads failed; first: "
                             f"{seeded.first_error}")  # fmt: skip
        with contextlib.ExitStack() as stack:
            _, phase_a = _phase(stack, args, folder / "phase-a", data, "phase A (sweep off)",
                                OFF, entities, notes)  # fmt: skip
        with contextlib.ExitStack() as stack:
            vault, phase_b = _phase(stack, args, folder / "phase-b", data, "phase B (sweep on)",
                                    on, entities, notes)  # fmt: skip
            load_end = vault.sweep()
            progress(f"phase B: waiting for the pass to finish (at most {args.pass_timeout:g} s)")
            # The pass is timed from the server's first health answer: Vault() waited for it.
            full_pass = finish_pass(vault, vault.first, load_end, args.pass_timeout)
            if not full_pass.completed:
                notes.append(f"the pass did not finish within --pass-timeout"
                             f" {args.pass_timeout:g} s")  # fmt: skip
    except (BenchError, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
        print(f"bench: sweep failed: {failure}", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = SweepReport(
        machine=machine(), documents=args.documents, document_size=args.document_size,
        mb_per_second=args.mb_per_second, max_ratio=args.max_ratio, seeded=seeded,
        phase_a=phase_a, phase_b=phase_b, full_pass=full_pass, failure=failure,
        notes=tuple(notes), wall_s=time.monotonic() - started,
    )  # fmt: skip
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    if failure is not None:
        return 2
    ratio = report.ratio
    return 0 if ratio is not None and ratio <= args.max_ratio else 1


# --------------------------------------------------------------------------- report


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _latency_row(title: str, requests: int, errors: int, q: Quantiles) -> list[str]:
    return [title, str(requests), str(errors), _ms(q.p50_ms), _ms(q.p90_ms), _ms(q.p99_ms),
            _ms(q.max_ms)]  # fmt: skip


def _load_rows(run: LoadRun) -> list[list[str]]:
    rows = [_latency_row(f"{run.label}: all", run.requests, run.errors, run.overall)]
    rows += [_latency_row(f"  {k.kind}", k.requests, k.errors, k.latency) for k in run.kinds]
    return rows


def _pace_lines(p: SweepPace, mb_per_second: float, what: str) -> list[str]:
    out = [f"  sweep pace {what}: {p.documents:,} documents, {p.bytes_read / 1e6:,.1f} MB in"
           f" {p.seconds:.1f} s = {_num(p.documents_per_s)} documents/s,"
           f" {_num(p.mb_per_s, 2)} MB/s (cap {mb_per_second:g} MB/s)"]  # fmt: skip
    if p.documents and p.mb_per_s is not None:
        mean = p.bytes_read / p.documents
        cap_docs = mb_per_second * 1e6 / mean
        if p.mb_per_s < 0.8 * mb_per_second:
            out.append(
                f"    at {format_size(round(mean))} a document the byte budget would allow"
                f" {cap_docs:,.0f} documents/s: the pace is bounded by per-document overhead"
                " (claim, verification, status, events, ledger leaf), not by bytes"
            )
        else:
            out.append(f"    the byte budget ({cap_docs:,.0f} documents/s at"
                       f" {format_size(round(mean))}) is what bounds the pace")  # fmt: skip
    return out


def render(r: SweepReport) -> str:
    m = r.machine
    out = [
        "Document Vault integrity-sweep benchmark",
        f"  machine  {m.cpus} CPUs, {m.system}, Python {m.python}, client loop {m.client_backend}",
        "",
    ]
    s = r.seeded
    if s is not None:
        out.append(
            f"Seeding (sweep off): {s.ok:,}/{s.documents:,} documents of"
            f" {format_size(s.size_bytes)} over {s.entities} entities, {s.clients} clients, in"
            f" {s.wall_s:.1f} s = {_num(s.rps)} uploads/s"
            + (f", {s.errors} failed" if s.errors else "")
        )
        out.append("")
    loads = [run for run in (r.phase_a, r.phase_b) if run is not None]
    if loads:
        first = loads[0]
        out.append(f"Client load: {first.clients} clients alternating 100 KB uploads and list"
                   f" requests (100 a page), {first.wall_s:.1f} s a phase")  # fmt: skip
        out.append(format_table(
            ["latency (ms)", "requests", "errors", "p50", "p90", "p99", "max"],
            [row for run in loads for row in _load_rows(run)],
        ))  # fmt: skip
        for run in loads:
            cpu = "n/a" if run.server_cpu is None else f"{run.server_cpu * 100:.0f} %"
            out.append(f"  {run.label}: {_num(run.rps)} req/s answered as expected,"
                       f" server CPU {cpu} of one core")  # fmt: skip
            if run.first_error:
                out.append(f"    ! first error: {run.first_error}")
    if r.phase_a is not None and r.phase_b is not None:
        a, b = r.phase_a.overall, r.phase_b.overall
        ratio = r.ratio
        verdict = "n/a" if ratio is None else ("met" if ratio <= r.max_ratio else "NOT MET")
        p50 = b.p50_ms / a.p50_ms if a.p50_ms and b.p50_ms is not None else None
        out += [
            f"  p50 B/A = {_num(p50, 2)}",
            f"  p99 B/A = {_num(ratio, 2)}  (target <= {r.max_ratio:g}, within"
            f" {(r.max_ratio - 1) * 100:.0f} %): {verdict}",
        ]
    if r.phase_b is not None and r.phase_b.sweep is not None:
        out.append("")
        out.append(f"Sweep (INTEGRITY_SWEEP_PERIOD_HOURS=1, INTEGRITY_SWEEP_MAX_MB_PER_SECOND="
                   f"{r.mb_per_second:g})")  # fmt: skip
        out += _pace_lines(r.phase_b.sweep, r.mb_per_second, "during the client load")
    p = r.full_pass
    if p is not None:
        if p.after_load is not None and p.after_load.seconds > 0:
            out += _pace_lines(p.after_load, r.mb_per_second, "after the load, no clients")
        state = "complete" if p.completed else f"NOT complete ({p.never_verified:,} never verified)"
        out += [
            f"  full pass {state}: {p.documents:,} documents in the vault"
            f" ({r.documents:,} seeded + {max(0, p.documents - r.documents):,} uploaded by the"
            f" phases' clients), {p.swept:,} swept"
            f" ({p.bytes_read / 1e6:,.1f} MB) in {p.seconds:.1f} s from the phase B server being"
            f" healthy = {_num(p.documents_per_s)} documents/s",
            f"    ({p.swept_before:,} already swept when it first answered; sweep failures"
            f" {p.failures}, mismatches {p.mismatches})",
        ]
    if r.failure:
        out += ["", f"  FAILED: {r.failure}"]
    out += ["", f"  run time {r.wall_s:.1f} s"]
    out += [f"  note: {n}" for n in r.notes]
    return "\n".join(out)


def to_json(r: SweepReport) -> dict[str, Any]:
    def plain(value: object) -> Any:
        return None if value is None else attrs.asdict(value)  # type: ignore[arg-type]

    return {
        "machine": plain(r.machine),
        "documents": r.documents,
        "document_size": r.document_size,
        "mb_per_second": r.mb_per_second,
        "seeding": plain(r.seeded),
        "phase_a": plain(r.phase_a),
        "phase_b": plain(r.phase_b),
        "p99_ratio": r.ratio,
        "max_ratio": r.max_ratio,
        "target_met": None if r.ratio is None else r.ratio <= r.max_ratio,
        "full_pass": plain(r.full_pass),
        "failure": r.failure,
        "notes": list(r.notes),
        "wall_s": r.wall_s,
    }
