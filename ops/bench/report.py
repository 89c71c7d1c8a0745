"""What the figures mean: verdicts against the targets, the text tables and the JSON form."""

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import attrs

from ops.bench.plan import LARGE_SIZE, READ_CLIENTS, SMALL_CLIENTS, SMALL_SIZE, VERIFY_SIZE, Targets
from ops.bench.records import (
    Floor,
    Measurements,
    Outcome,
    Reads,
    Report,
    SizeRun,
    SmallRun,
    Stats,
    Verdict,
)
from ops.bench.units import (
    MiB,
    format_mib,
    format_number,
    format_percent,
    format_seconds,
    format_size,
    format_table,
)

_PHASE_PLURAL = {"upload": "uploads", "verify": "verifies"}
_Sized = TypeVar("_Sized", SizeRun, Floor)


# --------------------------------------------------------------------------- verdicts


def _passfail(condition: bool) -> Outcome:
    return "PASS" if condition else "FAIL"


def _large_entry(sizes: Sequence[SizeRun]) -> SizeRun | None:
    large = [e for e in sizes if e.size_bytes >= LARGE_SIZE]
    return min(large, key=lambda e: e.size_bytes) if large else None


def _size_entry(entries: Iterable[_Sized], size: int) -> _Sized | None:
    return next((e for e in entries if e.size_bytes == size), None)


def verdicts(measured: Measurements, targets: Targets) -> list[Verdict]:
    """Compare a run's figures with the targets; SKIP what was not measured."""
    out: list[Verdict] = []
    large = _large_entry(measured.sizes)
    label = format_size(large.size_bytes) if large else format_size(LARGE_SIZE)

    name = f"{label} upload: server peak RSS growth < {targets.large_rss_growth_mib:g} MiB"
    memory = large.memory.upload if large else None
    if memory is None:
        out.append(Verdict(name, "SKIP", "no memory figures (no pid)" if large else "not run"))
    else:
        growth = memory.growth_bytes / MiB
        out.append(
            Verdict(name, _passfail(growth < targets.large_rss_growth_mib), f"{growth:.1f} MiB")
        )

    name = f"{label} upload: >= {targets.large_upload_mbps:g} MB/s"
    if not large:
        out.append(Verdict(name, "SKIP", "not run"))
    else:
        mbps = large.upload_mbps
        ok = mbps is not None and mbps >= targets.large_upload_mbps and not large.upload.errors
        out.append(Verdict(name, _passfail(ok), _rate_text(mbps, "MB/s", large.upload)))

    ratio = targets.verify_vs_sha256
    name = f"verify {format_size(VERIFY_SIZE)}: p50 throughput >= {ratio:.3g} x hashlib SHA-256"
    entry = _size_entry(measured.sizes, VERIFY_SIZE)
    floor = _size_entry(measured.floors, VERIFY_SIZE)
    if not entry or not floor:
        out.append(Verdict(name, "SKIP", "not run"))
    else:
        mbps, sha = entry.verify_mbps, floor.sha256_mbps
        ok = mbps is not None and mbps >= ratio * sha and not entry.verify.errors
        text = f"{format_number(mbps)} MB/s vs {sha:,.1f} MB/s (need {ratio * sha:,.1f})"
        out.append(Verdict(name, _passfail(ok), text + _errors_text(entry.verify)))

    small = max(measured.small, key=lambda e: e.clients, default=None)
    name = (
        f"{format_size(SMALL_SIZE)} uploads, {small.clients if small else max(SMALL_CLIENTS)} "
        f"clients: >= {targets.small_rps:g} req/s, p99 < {targets.small_p99_s:g} s, no errors"
    )
    if not small:
        out.append(Verdict(name, "SKIP", "not run"))
    else:
        rps, p99 = small.stats.rps, small.stats.p99_s
        ok = (
            rps is not None
            and rps >= targets.small_rps
            and p99 is not None
            and p99 < targets.small_p99_s
            and small.stats.errors == 0
            and small.stats.complete
        )
        text = f"{format_number(rps)} req/s, p99 {format_seconds(p99)}" + _errors_text(small.stats)
        out.append(Verdict(name, _passfail(ok), text))

    reads = measured.reads
    for title, target, stats in (
        ("list", targets.list_rps, reads.listing if reads else None),
        ("download URL", targets.download_url_rps, reads.download_url if reads else None),
    ):
        clients = reads.clients if reads else READ_CLIENTS
        name = f"{title}, {clients} clients: >= {target:g} req/s, no errors"
        if stats is None:
            out.append(Verdict(name, "SKIP", "not run"))
            continue
        rps = stats.rps
        ok = rps is not None and rps >= target and stats.errors == 0 and stats.complete
        out.append(Verdict(name, _passfail(ok), _rate_text(rps, "req/s", stats)))
    return out


def _errors_text(stats: Stats) -> str:
    parts = []
    if stats.errors:
        parts.append(f"{stats.errors} errors")
    if stats.requests < stats.planned:
        parts.append(f"{stats.requests}/{stats.planned} done")
    return f" ({', '.join(parts)})" if parts else ""


def _rate_text(value: float | None, unit: str, stats: Stats) -> str:
    return f"{format_number(value)} {unit}" + _errors_text(stats)


def had_errors(measured: Measurements) -> bool:
    """Whether any phase had a request without the expected answer."""
    stats = [s for e in measured.sizes for s in (e.upload, e.verify)]
    stats += [e.stats for e in measured.small]
    if measured.reads is not None:
        stats += [measured.reads.listing, measured.reads.download_url]
    return any(s.errors for s in stats)


# --------------------------------------------------------------------------- text


def render_report(report: Report) -> str:
    """The whole report as aligned plain-text tables."""
    server, machine, measured = report.server, report.machine, report.measurements
    out = ["Document Vault benchmark"]
    desc = f"{server.url}  ({server.mode}, pid {server.pid or 'n/a'}"
    if server.exit_code is not None:
        desc += f", exit {server.exit_code}"
    out.append(f"  server   {desc})")
    out.append(
        f"  machine  {machine.cpus} CPUs, {machine.system}, Python {machine.python}, "
        f"client loop {machine.client_backend}"
    )
    if report.backends is not None:
        for name, value in attrs.asdict(report.backends).items():
            out.append(f"  {name:<8} {value}")
    out.append(f"  targets  {report.profile}")
    if measured.sizes:
        out += _sizes_section(measured.sizes, server.pid)
    if measured.small:
        out += _small_section(measured.small)
    if measured.reads is not None:
        out += _reads_section(measured.reads)
    if measured.floors:
        out += ["", "Floors on this machine, same bytes"]
        rows = [
            [
                format_size(f.size_bytes),
                format_number(f.sha256_mbps),
                format_number(f.fsync_write_mbps),
            ]
            for f in measured.floors
        ]
        out.append(format_table(["size", "hashlib SHA-256 MB/s", "fsynced write MB/s"], rows))

    out += ["", f"Verdicts ({report.profile} targets)"]
    width = max((len(v.name) for v in report.verdicts), default=0)
    out += [f"  {v.status:<4}  {v.name:<{width}}  {v.measured}" for v in report.verdicts]
    out += [f"  note: {note}" for note in report.notes]
    return "\n".join(out)


def _sizes_section(sizes: Sequence[SizeRun], pid: int | None) -> list[str]:
    out = ["", "Uploads and verifies, one client, one request at a time"]
    rows = [
        [
            format_size(e.size_bytes),
            str(e.upload.ok),
            format_seconds(e.upload.p50_s),
            format_seconds(e.upload.p95_s),
            format_number(e.upload_mbps),
            format_seconds(e.verify.p50_s),
            format_seconds(e.verify.p95_s),
            format_number(e.verify_mbps),
            str(e.upload.errors + e.verify.errors),
        ]
        for e in sizes
    ]
    headers = [
        "size",
        "n",
        "upload p50",
        "upload p95",
        "upload MB/s",
        "verify p50",
        "verify p95",
        "verify MB/s",
        "errors",
    ]
    out.append(format_table(headers, rows))
    out += _error_lines(
        (f"{format_size(e.size_bytes)} {kind}", stats)
        for e in sizes
        for kind, stats in (("upload", e.upload), ("verify", e.verify))
    )
    mem_rows = [
        [
            f"{format_size(e.size_bytes)} {_PHASE_PLURAL.get(phase, phase)}",
            format_mib(m.baseline_bytes),
            format_mib(m.peak_bytes),
            format_mib(m.growth_bytes),
            format_mib(m.rss_after_bytes),
            m.method,
        ]
        for e in sizes
        for phase, m in e.memory.windows()
    ]
    out += ["", f"Server memory (pid {pid or 'n/a'}, peak = VmHWM)"]
    if mem_rows:
        headers = ["window", "baseline", "peak", "growth", "RSS after", "method"]
        out.append(format_table(headers, mem_rows))
    else:
        out.append("  n/a (no server pid)")
    return out


def _load_cells(stats: Stats) -> list[str]:
    """requests, req/s, p50, p99, errors, bench CPU, server CPU of a concurrent phase."""
    cpu = stats.cpu
    return [
        f"{stats.requests}/{stats.planned}",
        format_number(stats.rps),
        format_seconds(stats.p50_s),
        format_seconds(stats.p99_s),
        str(stats.errors),
        format_percent(cpu.client if cpu else None),
        format_percent(cpu.server if cpu else None),
    ]


def _small_section(small: Sequence[SmallRun]) -> list[str]:
    out = ["", f"{format_size(SMALL_SIZE)} uploads (CPU: share of one core over the phase)"]
    rows = [[str(e.clients), *_load_cells(e.stats)] for e in small]
    headers = ["clients", "requests", "req/s", "p50", "p99", "non-201", "bench CPU", "server CPU"]
    out.append(format_table(headers, rows))
    out += _error_lines((f"{e.clients} clients", e.stats) for e in small)
    return out


def _reads_section(reads: Reads) -> list[str]:
    out = [
        "",
        f"Reads, {reads.clients} clients, entity holding {reads.entity_documents} documents",
    ]
    phases = (("list", reads.listing), ("download URL", reads.download_url))
    rows = [[title, *_load_cells(stats)] for title, stats in phases]
    headers = ["route", "requests", "req/s", "p50", "p99", "errors", "bench CPU", "server CPU"]
    out.append(format_table(headers, rows))
    out += _error_lines((("list", reads.listing), ("download_url", reads.download_url)))
    return out


def _error_lines(items: Iterable[tuple[str, Stats]]) -> list[str]:
    lines = []
    for title, stats in items:
        if stats.errors:
            statuses = ", ".join(f"{k}: {v}" for k, v in stats.statuses.items())
            lines.append(f"  ! {title}: {statuses}; first: {stats.first_error}")
    return lines


# --------------------------------------------------------------------------- JSON


def stats_json(stats: Stats) -> dict[str, Any]:
    """A phase's statistics; a concurrent phase that ran adds client_cpu and server_cpu."""
    out = attrs.asdict(stats, filter=attrs.filters.exclude(attrs.fields(Stats).cpu))
    if stats.cpu is not None:
        out["client_cpu"] = stats.cpu.client
        out["server_cpu"] = stats.cpu.server
    return out


def _size_json(run: SizeRun) -> dict[str, Any]:
    return {
        "size_bytes": run.size_bytes,
        "upload": stats_json(run.upload),
        "verify": stats_json(run.verify),
        "upload_mbps": run.upload_mbps,
        "verify_mbps": run.verify_mbps,
        "memory": {phase: attrs.asdict(m) for phase, m in run.memory.windows()},
    }


def _reads_json(reads: Reads | None) -> dict[str, Any]:
    if reads is None:
        return {}
    return {
        "clients": reads.clients,
        "entity_documents": reads.entity_documents,
        "list": stats_json(reads.listing),
        "download_url": stats_json(reads.download_url),
    }


def report_json(report: Report) -> dict[str, Any]:
    """The ``--json`` form: plain dicts and lists, keys in the order of the original report."""
    measured = report.measurements
    out: dict[str, Any] = {
        "profile": report.profile,
        "targets": attrs.asdict(report.targets),
        "machine": attrs.asdict(report.machine),
        "notes": list(report.notes),
        "floors": [attrs.asdict(f) for f in measured.floors],
    }
    if report.backends is not None:
        out["backends"] = attrs.asdict(report.backends)
    out["server"] = attrs.asdict(report.server)
    out["sizes"] = [_size_json(e) for e in measured.sizes]
    out["small"] = [
        {"clients": e.clients, "size_bytes": e.size_bytes, **stats_json(e.stats)}
        for e in measured.small
    ]
    out["reads"] = _reads_json(measured.reads)
    out["verdicts"] = [attrs.asdict(v) for v in report.verdicts]
    return out
