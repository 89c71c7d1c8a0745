"""What the soak's figures mean: the verdicts, the text tables and the JSON form."""

from collections.abc import Sequence
from typing import Any

import attrs

from ops.bench.records import Verdict
from ops.bench.report import stats_json
from ops.bench.units import (
    MiB,
    format_mib,
    format_number,
    format_seconds,
    format_size,
    format_table,
)
from ops.soak.plan import (
    FD_SLACK,
    MIN_TAIL_REQUESTS,
    P99_RATIO_LIMIT,
    RSS_GROWTH_LIMIT_MIB,
    WINDOW_S,
    mix_shares,
)
from ops.soak.probe import CLOSE_WAIT_SOCKET
from ops.soak.records import (
    Checkpoint,
    OutboxMetrics,
    SoakMeasurements,
    SoakReport,
    Window,
)
from ops.soak.windows import slope_per_minute

WARMUP_LABEL = "warm-up"

# --------------------------------------------------------------------------- verdicts


def _proc_pair(
    warm: Checkpoint | None, end: Checkpoint | None
) -> tuple[Checkpoint, Checkpoint] | str:
    if warm is None:
        return "no warm-up checkpoint (the run ended first)"
    if end is None:
        return "no end checkpoint"
    if warm.proc is None or end.proc is None:
        return "no /proc figures (no server pid)"
    return warm, end


def rss_verdict(
    warm: Checkpoint | None, end: Checkpoint | None, limit_mib: float = RSS_GROWTH_LIMIT_MIB
) -> Verdict:
    """RSS at the end checkpoint minus RSS at the warm-up checkpoint, below limit_mib."""
    name = f"server RSS growth from warm-up to end < {limit_mib:g} MiB"
    pair = _proc_pair(warm, end)
    if isinstance(pair, str):
        return Verdict(name, "SKIP", pair)
    before, after = (c.proc.rss_bytes for c in pair if c.proc)
    growth = (after - before) / MiB
    text = f"{growth:+.1f} MiB ({format_mib(before)} -> {format_mib(after)})"
    return Verdict(name, "PASS" if growth < limit_mib else "FAIL", text)


def fd_verdict(warm: Checkpoint | None, end: Checkpoint | None, slack: int = FD_SLACK) -> Verdict:
    """Open descriptors at the end checkpoint at most slack above the warm-up checkpoint's."""
    name = f"open file descriptors from warm-up to end: growth <= {slack}"
    # Sockets in CLOSE-WAIT are left out: the server closes them at its keep-alive
    # timeout, so they depend on when a client last hung up, not on growth.
    pair = _proc_pair(warm, end)
    if isinstance(pair, str):
        return Verdict(name, "SKIP", pair)
    before, after = (c.proc.held_fds if c.proc else None for c in pair)
    if before is None or after is None:
        return Verdict(name, "SKIP", "/proc/PID/fd not readable")

    def both(figure: str) -> str:
        return " -> ".join(str(getattr(c.proc, figure, None)) for c in pair)

    grown = _kind_changes(pair[0], pair[1], skip=CLOSE_WAIT_SOCKET)
    text = f"{after - before:+d} ({before} -> {after}; threads {both('threads')}"
    if any(c.proc and c.proc.close_wait for c in pair):
        text += f"; not counted: close-wait sockets {both('close_wait')}"
    text += ")" + (f": {grown}" if grown else "")
    return Verdict(name, "PASS" if after - before <= slack else "FAIL", text)


def _kind_changes(before: Checkpoint, after: Checkpoint, limit: int = 4, skip: str = "") -> str:
    """The kinds of descriptor whose count changed most, e.g. 'vault.sqlite3 +6'."""
    old = before.proc.fd_kinds if before.proc else {}
    new = after.proc.fd_kinds if after.proc else {}
    changes = [(k, new.get(k, 0) - old.get(k, 0)) for k in sorted({*old, *new} - {skip})]
    changes = sorted((c for c in changes if c[1]), key=lambda c: -abs(c[1]))[:limit]
    return ", ".join(f"{kind} {delta:+d}" for kind, delta in changes)


def after_warmup(windows: Sequence[Window]) -> list[Window]:
    return [w for w in windows if w.label != WARMUP_LABEL]


def p99_trend_ms(windows: Sequence[Window]) -> float | None:
    """Least-squares slope of the windows' p99 after the warm-up, in ms per minute."""
    points = [
        ((w.start_s + w.end_s) / 2, w.stats.p99_s * 1000)
        for w in after_warmup(windows)
        if w.stats.p99_s is not None
    ]
    return slope_per_minute(points)


def rss_trend_mib(measured: SoakMeasurements) -> float | None:
    """Least-squares slope of the sampler's RSS readings after the warm-up, MiB per minute."""
    warm = measured.checkpoint("warm-up")
    if warm is None:
        return None
    points = [(p.at_s, p.rss_bytes / MiB) for p in measured.series if p.at_s >= warm.at_s]
    return slope_per_minute(points)


def p99_verdict(windows: Sequence[Window], limit: float = P99_RATIO_LIMIT) -> Verdict:
    """The last window's p99 at most limit times the first window's after the warm-up."""
    name = f"p99 flat: last window's p99 <= {limit:g} x the first's after the warm-up"
    judged = after_warmup(windows)
    if len(judged) < 2:
        return Verdict(
            name, "SKIP", f"{len(judged)} window(s) after the warm-up: too short a run to compare"
        )
    first, last = judged[0].stats.p99_s, judged[-1].stats.p99_s
    if first is None or last is None:
        return Verdict(name, "FAIL", "a window without one successful request")
    ratio = last / first
    trend = p99_trend_ms(windows)
    text = (
        f"window 1 {format_seconds(first)}, window {judged[-1].label} {format_seconds(last)}:"
        f" x{ratio:.2f}" + (f"; trend {trend:+.1f} ms/min" if trend is not None else "")
    )
    return Verdict(name, "PASS" if ratio <= limit else "FAIL", text)


def errors_verdict(measured: SoakMeasurements, planned: int) -> Verdict:
    """Every planned request sent, and every answer the one expected."""
    name = "every planned request sent and answered as expected"
    sent, errors = measured.requests, measured.errors
    parts = []
    if errors:
        worst = sorted(measured.statuses.items(), key=lambda kv: -kv[1])[:3]
        parts.append(f"{errors} errors ({', '.join(f'{k}: {v}' for k, v in worst)})")
    if sent < planned:
        parts.append(f"{sent}/{planned} sent")
    ok = not parts
    return Verdict(name, "PASS" if ok else "FAIL", "; ".join(parts) or f"{sent} requests, 0 errors")


def verdicts(measured: SoakMeasurements, planned: int) -> list[Verdict]:
    """The soak's four verdicts: RSS, descriptors, p99, errors."""
    warm, end = measured.checkpoint("warm-up"), measured.checkpoint("end")
    return [
        rss_verdict(warm, end),
        fd_verdict(warm, end),
        p99_verdict(measured.windows),
        errors_verdict(measured, planned),
    ]


# --------------------------------------------------------------------------- text


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _outbox_cells(outbox: OutboxMetrics | None, base: OutboxMetrics | None) -> list[str]:
    """pending, parked, delivered (since base), pruned (since base) of /metrics."""
    if outbox is None:
        return ["n/a"] * 4

    def since(now: float | None, then: float | None) -> float | None:
        return None if now is None else now - (then or 0.0)

    delivered = since(outbox.delivered_total, base.delivered_total if base else None)
    pruned = since(outbox.pruned_total, base.pruned_total if base else None)
    return [_count(outbox.pending), _count(outbox.parked), _count(delivered), _count(pruned)]


def render_report(report: SoakReport) -> str:
    """The whole report as aligned plain-text tables."""
    server, machine, plan, measured = (
        report.server,
        report.machine,
        report.plan,
        report.measurements,
    )
    out = ["Document Vault soak"]
    desc = f"{server.url}  ({server.mode}, pid {server.pid or 'n/a'}"
    if server.exit_code is not None:
        desc += f", exit {server.exit_code}"
    out.append(f"  server    {desc})")
    out.append(
        f"  machine   {machine.cpus} CPUs, {machine.system}, Python {machine.python}, "
        f"client loop {machine.client_backend}"
    )
    rps = measured.requests / measured.wall_s if measured.wall_s else None
    out.append(
        f"  workload  {plan.requests:,} requests ({plan.warmup:,} warm-up), {plan.clients} clients,"
        f" seed {plan.seed}; {measured.requests:,} sent in {measured.wall_s:.1f} s"
        f" ({format_number(rps)} req/s)"
    )
    shares = mix_shares(plan.mix)
    sizes = ", ".join(format_size(s) for s in plan.upload_sizes)
    details = {
        "upload": f" ({sizes} in turn, {plan.entities} entities)",
        "list": f" (limit {plan.list_limit})",
    }
    mix = ", ".join(
        f"{op} {shares[op] * 100:.0f}%{details.get(op, '')}" for op in plan.mix if plan.mix[op]
    )
    out.append(f"  mix       {mix}")
    out.append(f"  seed      {plan.seed_documents} documents uploaded before the run, not counted")

    out += [
        "",
        f"Latency per window ({WINDOW_S:g} s of answers from the warm-up's end; a last window"
        f" under {MIN_TAIL_REQUESTS:,} answers joins the one before)",
    ]
    rows = [
        [
            w.label,
            f"{w.start_s:.0f}-{w.end_s:.0f} s",
            f"{w.stats.requests:,}",
            format_number(w.stats.rps),
            str(w.stats.errors),
            format_seconds(w.stats.p50_s),
            format_seconds(w.stats.p95_s),
            format_seconds(w.stats.p99_s),
            format_mib(w.rss_bytes),
            _count(w.fds),
            _count(w.threads),
        ]
        for w in measured.windows
    ]
    headers = ["window", "span", "requests", "req/s", "errors", "p50", "p95", "p99", "RSS", "FDs"]
    out.append(format_table([*headers, "threads"], rows))

    ops = [o.op for o in measured.operations]
    out += ["", "p99 per operation per window"]
    rows = [
        [w.label, *(format_seconds(w.op_p99_s.get(op)) for op in ops)] for w in measured.windows
    ]
    out.append(format_table(["window", *ops], rows))
    trend = rss_trend_mib(measured)
    if trend is not None:
        out.append(
            f"  server RSS after the warm-up: {trend:+.1f} MiB/min (least squares, 1 s samples)"
        )

    out += ["", "Per operation (whole run)"]
    rows = [
        [
            o.op,
            f"{o.share * 100:.0f}%",
            f"{o.stats.requests:,}",
            str(o.stats.errors),
            format_seconds(o.stats.p50_s),
            format_seconds(o.stats.p95_s),
            format_seconds(o.stats.p99_s),
        ]
        for o in measured.operations
    ]
    out.append(
        format_table(["operation", "share", "requests", "errors", "p50", "p95", "p99"], rows)
    )
    out += ["", "Errors by status"]
    if measured.statuses:
        out += [
            f"  {key}: {count}  (first: {measured.first_errors.get(key, 'n/a')})"
            for key, count in measured.statuses.items()
        ]
    else:
        out.append("  none")

    out += _server_section(measured, server.pid)
    out += _outbox_section(measured)

    out += ["", "Verdicts"]
    width = max((len(v.name) for v in report.verdicts), default=0)
    out += [f"  {v.status:<4}  {v.name:<{width}}  {v.measured}" for v in report.verdicts]
    out += [f"  note: {note}" for note in report.notes]
    return "\n".join(out)


def _server_section(measured: SoakMeasurements, pid: int | None) -> list[str]:
    out = ["", f"Server process (pid {pid or 'n/a'}, its process tree)"]
    rows = [
        [
            c.name,
            f"{c.at_s:.1f} s",
            f"{c.requests_done:,}",
            format_mib(c.proc.rss_bytes if c.proc else None),
            _count(c.proc.fds if c.proc else None),
            _count(c.proc.close_wait if c.proc else None),
            _count(c.proc.threads if c.proc else None),
        ]
        for c in measured.checkpoints
    ]
    headers = ["checkpoint", "at", "requests", "RSS", "FDs", "of which close-wait", "threads"]
    out.append(format_table(headers, rows))
    kinds = [
        f"  {c.name}: " + ", ".join(f"{k} {v}" for k, v in c.proc.fd_kinds.items())
        for c in measured.checkpoints
        if c.proc and c.proc.fd_kinds
    ]
    if kinds:
        out += ["  descriptors by kind:", *kinds]
    return out


def _outbox_section(measured: SoakMeasurements) -> list[str]:
    out = ["", "Outbox (/metrics, every destination; delivered and pruned since 'before')"]
    before = measured.checkpoint("before")
    base = before.outbox if before else None
    rows = [[c.name, *_outbox_cells(c.outbox, base)] for c in measured.checkpoints]
    if measured.outbox_settled is not None:
        label = f"settled ({measured.outbox_settle_s or 0:.1f} s after end)"
        rows.append([label, *_outbox_cells(measured.outbox_settled, base)])
    out.append(format_table(["at", "pending", "parked", "delivered", "pruned"], rows))
    pruned_known = any(c.outbox and c.outbox.pruned_total is not None for c in measured.checkpoints)
    if not pruned_known:
        out.append("  pruned: n/a (the server exports no vault_outbox_pruned_total)")
    rows_db = measured.outbox_rows
    if rows_db is not None:
        out.append(
            f"  SQLite after stop: {rows_db.total:,} outbox rows (pending {rows_db.pending:,},"
            f" delivered {rows_db.delivered:,}, parked {rows_db.parked:,});"
            f" {rows_db.documents:,} documents"
        )
    if measured.data_bytes is not None:
        out.append(f"  data folder after stop: {format_mib(measured.data_bytes)}")
    return out


# --------------------------------------------------------------------------- JSON


def _window_json(window: Window) -> dict[str, Any]:
    return {
        "label": window.label,
        "start_s": window.start_s,
        "end_s": window.end_s,
        **stats_json(window.stats),
        "rss_bytes": window.rss_bytes,
        "fds": window.fds,
        "threads": window.threads,
        "op_p99_s": window.op_p99_s,
    }


def report_json(report: SoakReport) -> dict[str, Any]:
    """The ``--json`` form: plain dicts and lists."""
    measured = report.measurements
    return {
        "plan": attrs.asdict(report.plan),
        "machine": attrs.asdict(report.machine),
        "server": attrs.asdict(report.server),
        "notes": list(report.notes),
        "wall_s": measured.wall_s,
        "truncated": measured.truncated,
        "windows": [_window_json(w) for w in measured.windows],
        "p99_trend_ms_per_min": p99_trend_ms(measured.windows),
        "rss_trend_mib_per_min": rss_trend_mib(measured),
        "series": [attrs.asdict(p) for p in measured.series],
        "operations": [
            {"op": o.op, "share": o.share, **stats_json(o.stats)} for o in measured.operations
        ],
        "errors": measured.statuses,
        "first_errors": measured.first_errors,
        "checkpoints": [attrs.asdict(c) for c in measured.checkpoints],
        "outbox_settled": (
            attrs.asdict(measured.outbox_settled) if measured.outbox_settled else None
        ),
        "outbox_settle_s": measured.outbox_settle_s,
        "outbox_rows": attrs.asdict(measured.outbox_rows) if measured.outbox_rows else None,
        "data_bytes": measured.data_bytes,
        "verdicts": [attrs.asdict(v) for v in report.verdicts],
    }
