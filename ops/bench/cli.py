"""The command line: flags, and one run from the floors to the verdicts."""

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from ops.bench.backends import BACKENDS, DEFAULT_PG_ADMIN_URL, start_postgres_s3, with_database
from ops.bench.console import BenchError, progress, set_quiet
from ops.bench.floors import fsync_write_mbps, sha256_mbps
from ops.bench.load import CLIENT_BACKEND, Bench
from ops.bench.plan import (
    DEFAULT_READ_REQUESTS,
    DEFAULT_SIZES,
    DEFAULT_SMALL_REQUESTS,
    DEFAULT_TIMEOUT_S,
    SMALL_CLIENTS,
    SMALL_SIZE,
    TARGET_PROFILES,
    Targets,
    profile_for,
)
from ops.bench.records import (
    Backends,
    Floor,
    Machine,
    Measurements,
    Reads,
    Report,
    Server,
    SizeRun,
    SmallRun,
)
from ops.bench.report import had_errors, render_report, report_json, verdicts
from ops.bench.server import SpawnedServer, wait_healthy
from ops.bench.units import parse_size


@attrs.frozen
class Options:
    """The parsed command line."""

    url: str | None
    pid: int | None
    sizes: tuple[int, ...]
    repeat: int | None
    small_requests: tuple[int, ...]
    read_requests: int
    backends: str
    pg_admin_url: str
    targets: str  # the profile name, resolved by profile_for
    target: tuple[tuple[str, float], ...]  # --target overrides
    timeout: float
    json: bool
    quiet: bool


def is_loopback_url(url: str) -> bool:
    """True for an http(s) URL whose host is localhost or a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({parse_size(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not sizes or sizes[0] < 1024:
        raise argparse.ArgumentTypeError("sizes must be at least 1 KiB")
    return sizes


def _small_requests(text: str) -> tuple[int, ...]:
    parts = [_positive_int(p) for p in text.split(",")]
    if len(parts) == 1:
        parts *= len(SMALL_CLIENTS)
    if len(parts) != len(SMALL_CLIENTS):
        raise argparse.ArgumentTypeError(f"give one count or {len(SMALL_CLIENTS)}, comma-separated")
    return tuple(parts)


def _target_override(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    known = set(attrs.fields_dict(Targets))
    if not sep or name not in known:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {sorted(known)}")
    return name, float(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench",
        description="Benchmark a Document Vault server (a fresh one by default).",
        epilog="python -m ops.bench ledger [--help]: the verifiable ledger's benchmarks"
        " (integration rate, receipts at 1,000,000 leaves, uploads before and after);"
        " python -m ops.bench outside [--help]: witnessing latency and anchor costs;"
        " python -m ops.bench sweep [--help]: client latency with the integrity sweep,"
        " its pace and a full pass.",
    )
    parser.add_argument("--url", help="measure this already running server (loopback only)")
    parser.add_argument("--pid", type=int, help="the --url server's pid, for memory figures")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated document sizes (default 1MB,10MB,100MB; MB = 10^6 bytes)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        help="uploads and verifies per size (default 5, 3 for sizes >= 100 MB)",
    )
    parser.add_argument(
        "--small-requests",
        type=_small_requests,
        default=DEFAULT_SMALL_REQUESTS,
        help="100 KB uploads with 1 and with 32 clients (default 200,640)",
    )
    parser.add_argument(
        "--read-requests",
        type=_positive_int,
        default=DEFAULT_READ_REQUESTS,
        help=f"list and download-URL requests each (default {DEFAULT_READ_REQUESTS})",
    )
    parser.add_argument(
        "--backends",
        choices=BACKENDS,
        default="embedded",
        help="what the spawned server runs on: its embedded default, or PostgreSQL (a fresh"
        " database, dropped afterwards) and S3 on moto's server (default embedded)",
    )
    parser.add_argument(
        "--pg-admin-url",
        default=DEFAULT_PG_ADMIN_URL,
        help="with --backends postgres-s3: a PostgreSQL server and a user allowed to create"
        f" databases (default {DEFAULT_PG_ADMIN_URL})",
    )
    parser.add_argument(
        "--targets",
        choices=sorted(TARGET_PROFILES),
        help="which set of pass marks the verdicts use (default: the one named like --backends)",
    )
    parser.add_argument(
        "--target",
        type=_target_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one pass mark, e.g. --target small_rps=80 (repeatable)",
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
    if args.url and args.backends != "embedded":
        parser.error("--backends chooses what a spawned server runs on: not with --url")
    if args.backends == "postgres-s3":
        try:
            with_database(args.pg_admin_url, "postgres")
        except ValueError as exc:
            parser.error(f"--pg-admin-url: {exc}")
    return Options(
        url=args.url,
        pid=args.pid,
        sizes=tuple(args.sizes),
        repeat=args.repeat,
        small_requests=tuple(args.small_requests),
        read_requests=args.read_requests,
        backends=args.backends,
        pg_admin_url=args.pg_admin_url,
        targets=profile_for(args.backends, args.targets),
        target=tuple(args.target),
        timeout=args.timeout,
        json=args.json,
        quiet=args.quiet,
    )


def build_targets(options: Options) -> Targets:
    return attrs.evolve(TARGET_PROFILES[options.targets], **dict(options.target))


def machine() -> Machine:
    return Machine(
        cpus=os.cpu_count(),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        client_backend=CLIENT_BACKEND,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["ledger"]:
        from ops.bench.ledger import main as ledger_main

        return ledger_main(args[1:])
    if args[:1] == ["outside"]:
        from ops.bench.outside import main as outside_main

        return outside_main(args[1:])
    if args[:1] == ["sweep"]:
        from ops.bench.sweep import main as sweep_main

        return sweep_main(args[1:])
    options = parse_args(args)
    set_quiet(options.quiet)
    targets = build_targets(options)
    folder = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    spawned: SpawnedServer | None = None
    stack = contextlib.ExitStack()
    failed = False
    notes: list[str] = []
    floors: list[Floor] = []
    backends: Backends | None = None
    server: Server | None = None
    sizes: list[SizeRun] = []
    small: list[SmallRun] = []
    reads: Reads | None = None
    try:
        progress("generating random payloads")
        payloads = {size: os.urandom(size) for size in options.sizes}
        small_payload = os.urandom(SMALL_SIZE)
        progress("measuring floors (hashlib SHA-256, fsynced write)")
        floor_dir = folder / "floors"
        floor_dir.mkdir()
        floors = [
            Floor(
                size_bytes=size,
                sha256_mbps=sha256_mbps(payload),
                fsync_write_mbps=fsync_write_mbps(payload, floor_dir),
            )
            for size, payload in payloads.items()
        ]

        if options.url:
            url, pid, mode = options.url.rstrip("/"), options.pid, "external"
        else:
            env: dict[str, str | None] = {}
            if options.backends == "postgres-s3":
                env, backends = start_postgres_s3(stack, options.pg_admin_url, folder)
            spawned = SpawnedServer(folder, env)
            spawned.start()
            url, pid, mode = spawned.url, spawned.pid, f"spawned, {options.backends}"
            progress(f"started server pid {pid} on {url}")
        server = Server(url=url, pid=pid, mode=mode)
        wait_healthy(url, spawned)

        bench = Bench(
            url,
            pid,
            repeat=options.repeat,
            small_requests=options.small_requests,
            read_requests=options.read_requests,
            timeout=options.timeout,
        )
        bench.warm_up()
        sizes = bench.sizes(payloads)
        small = bench.small_uploads(small_payload)
        reads = bench.reads()
        if bench.truncated:
            notes.append(
                f"--timeout {options.timeout:g} s reached; incomplete: {', '.join(bench.truncated)}"
            )
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        failed = True
    finally:
        measured = Measurements(
            floors=tuple(floors), sizes=tuple(sizes), small=tuple(small), reads=reads
        )
        if spawned is not None:
            code = spawned.stop()
            if server is not None:
                server = attrs.evolve(server, exit_code=code)
            progress(f"server stopped, exit code {code}")
            if code != 0:
                notes.append(f"server exited with code {code} after SIGTERM (expected 0)")
            if failed or code != 0 or had_errors(measured):
                tail = spawned.log_tail()
                if tail:
                    print(f"bench: server log, last lines:\n{tail}", file=sys.stderr)
        try:
            stack.close()
        except Exception as exc:
            print(f"bench: cleaning up the backends failed: {exc}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
    if failed or server is None:
        return 2

    report = Report(
        profile=options.targets,
        targets=targets,
        machine=machine(),
        server=server,
        measurements=measured,
        verdicts=tuple(verdicts(measured, targets)),
        backends=backends,
        notes=tuple(notes),
    )
    print(json.dumps(report_json(report), indent=2) if options.json else render_report(report))
    return 1 if any(v.status == "FAIL" for v in report.verdicts) else 0
