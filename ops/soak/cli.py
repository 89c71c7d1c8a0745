"""The command line: flags, and one run from the seed to the verdicts."""

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

from ops.bench.cli import is_loopback_url, machine
from ops.bench.console import BenchError, progress, set_prefix, set_quiet
from ops.bench.load import Deadline
from ops.bench.records import Server
from ops.bench.server import SpawnedServer, wait_healthy
from ops.soak.load import Soak
from ops.soak.metrics import count_outbox_rows, folder_bytes
from ops.soak.plan import (
    DEFAULT_CLIENTS,
    DEFAULT_MIX,
    DEFAULT_REQUESTS,
    DEFAULT_SEED,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WARMUP,
    ENTITIES,
    LIST_LIMIT,
    SEED_DOCUMENTS,
    UPLOAD_SIZES,
)
from ops.soak.records import OutboxRows, Plan, SoakMeasurements, SoakReport
from ops.soak.report import render_report, report_json, verdicts
from ops.soak.windows import error_statuses, operations, windows

# The embedded default's database, under the spawned server's VAULT_DATA_DIR.
SQLITE_FILE = "vault.sqlite3"


@attrs.frozen
class Options:
    """The parsed command line."""

    url: str | None
    pid: int | None
    requests: int
    clients: int
    warmup: int
    seed: int
    timeout: float
    json: bool
    quiet: bool


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.soak",
        description="Soak a Document Vault server with a long mixed workload"
        " (a fresh server by default).",
    )
    parser.add_argument("--url", help="soak this already running server (loopback only)")
    parser.add_argument("--pid", type=int, help="the --url server's pid, for /proc figures")
    parser.add_argument(
        "--requests",
        type=_positive_int,
        default=DEFAULT_REQUESTS,
        help=f"requests in the run, warm-up included (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--clients",
        type=_positive_int,
        default=DEFAULT_CLIENTS,
        help=f"concurrent clients, one keep-alive connection each (default {DEFAULT_CLIENTS})",
    )
    parser.add_argument(
        "--warmup",
        type=_positive_int,
        default=DEFAULT_WARMUP,
        help=f"requests before the warm-up checkpoint (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the request order and picks (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"budget for the whole run in seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.pid is not None and not args.url:
        parser.error("--pid needs --url")
    if args.url and not is_loopback_url(args.url):
        parser.error("--url must point at localhost or a loopback address")
    if args.pid is not None and not Path(f"/proc/{args.pid}").exists():
        parser.error(f"no process {args.pid}")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.warmup >= args.requests:
        parser.error("--warmup must be less than --requests")
    if args.warmup < args.clients:
        # Every client has connected by the warm-up checkpoint only if each sent one.
        parser.error("--warmup must be at least --clients")
    return Options(
        url=args.url,
        pid=args.pid,
        requests=args.requests,
        clients=args.clients,
        warmup=args.warmup,
        seed=args.seed,
        timeout=args.timeout,
        json=args.json,
        quiet=args.quiet,
    )


def build_plan(options: Options) -> Plan:
    return Plan(
        requests=options.requests,
        clients=options.clients,
        warmup=options.warmup,
        seed=options.seed,
        mix=dict(DEFAULT_MIX),
        upload_sizes=UPLOAD_SIZES,
        entities=ENTITIES,
        list_limit=LIST_LIMIT,
        seed_documents=SEED_DOCUMENTS,
    )


def measurements_of(soak: Soak, extra: dict[str, object]) -> SoakMeasurements:
    """The figures of a finished (or cut short) run."""
    samples = soak.samples
    rows = extra.get("outbox_rows")
    data = extra.get("data_bytes")
    return SoakMeasurements(
        wall_s=soak.wall_s,
        windows=tuple(windows(samples, resumed_s=soak.resumed_s, series=soak.series)),
        operations=tuple(operations(samples, soak.plan.mix, soak.wall_s)),
        checkpoints=tuple(soak.checkpoints),
        series=tuple(soak.series),
        statuses=error_statuses(samples),
        first_errors=dict(sorted(soak.first_errors.items())),
        outbox_settled=soak.outbox_settled,
        outbox_settle_s=soak.outbox_settle_s,
        outbox_rows=rows if isinstance(rows, OutboxRows) else None,
        data_bytes=data if isinstance(data, int) else None,
        truncated=len(samples) < soak.plan.requests,
    )


def main(argv: Sequence[str] | None = None) -> int:
    set_prefix("soak")
    options = parse_args(argv)
    set_quiet(options.quiet)
    plan = build_plan(options)
    deadline = Deadline(options.timeout)
    folder = Path(tempfile.mkdtemp(prefix="vault-soak-"))
    spawned: SpawnedServer | None = None
    server: Server | None = None
    soak: Soak | None = None
    failed = False
    notes: list[str] = []
    extra: dict[str, object] = {}
    try:
        if options.url:
            url, pid, mode = options.url.rstrip("/"), options.pid, "external"
        else:
            spawned = SpawnedServer(folder)
            spawned.start()
            url, pid, mode = spawned.url, spawned.pid, "spawned"
            progress(f"started server pid {pid} on {url}")
        server = Server(url=url, pid=pid, mode=mode)
        wait_healthy(url, spawned)
        soak = Soak(url, pid, plan, deadline)
        soak.seed()
        soak.run()
        notes += soak.notes
    except BenchError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        failed = True
    finally:
        if spawned is not None:
            code = spawned.stop()
            if server is not None:
                server = attrs.evolve(server, exit_code=code)
            progress(f"server stopped, exit code {code}")
            if code != 0:
                notes.append(f"server exited with code {code} after SIGTERM (expected 0)")
            data_dir = folder / "data"
            extra["outbox_rows"] = count_outbox_rows(data_dir / SQLITE_FILE)
            extra["data_bytes"] = folder_bytes(data_dir) if data_dir.is_dir() else None
            if failed or code != 0 or (soak is not None and soak.first_errors):
                tail = spawned.log_tail()
                if tail:
                    print(f"soak: server log, last lines:\n{tail}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
    if failed or server is None or soak is None:
        return 2

    measured = measurements_of(soak, extra)
    if measured.truncated:
        notes.append(f"--timeout {options.timeout:g} s reached after {len(soak.samples)} requests")
    report = SoakReport(
        plan=plan,
        machine=machine(),
        server=server,
        measurements=measured,
        verdicts=tuple(verdicts(measured, plan.requests)),
        notes=tuple(notes),
    )
    print(json.dumps(report_json(report), indent=2) if options.json else render_report(report))
    return 1 if any(v.status == "FAIL" for v in report.verdicts) else 0
