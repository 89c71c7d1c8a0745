"""Benchmark a Document Vault server: uploads, verifies, listing and download URLs.

Run it as ``python -m ops.bench`` from the repository root (``make bench``).

Default mode spawns a fresh ``python -m vault serve`` on a free loopback port,
with its data in a temporary folder, measures it, stops it with SIGTERM and
removes the folder. ``--url URL [--pid PID]`` measures a server that already
runs on this machine instead (memory figures need its pid).

``--backends postgres-s3`` gives the spawned server PostgreSQL and S3: a fresh
database on the ``--pg-admin-url`` server (dropped afterwards) and moto's
server in a child process on a free loopback port, holding a versioned bucket
and a KMS key; the verdicts then use the ``postgres-s3`` targets.

Safety: only loopback URLs are accepted; every loop is bounded in count, the
measurements together by ``--timeout`` seconds, the spawned server's start-up
and shutdown by 30 s each.

Dependencies: the standard library, attrs and httpx (with its anyio); the
concurrent phases run under trio when it is installed, else asyncio.
``--backends postgres-s3`` also needs psycopg, boto3 and moto's server (the
project's venv).

Output: an aligned table on stdout, or the same figures as JSON with
``--json``. Progress goes to stderr. Exit status: 0 when no verdict failed,
1 when one did, 2 when the benchmark could not run.

Units: MB is 10**6 bytes (sizes, MB/s); MiB is 2**20 bytes (memory).
Percentiles interpolate linearly between the closest ranks and are taken
over the successful requests only; req/s counts successful answers per
second of wall time.

Modules: ``cli`` (flags, the run), ``load`` (the HTTP loops), ``multipart``
(the streamed upload body), ``stats`` (percentiles, request statistics),
``floors`` (hashlib and fsync on this machine), ``server`` (the spawned
server, /proc), ``backends`` (PostgreSQL and moto for ``postgres-s3``),
``records`` (the typed figures), ``report`` (verdicts, tables, JSON),
``units`` (sizes and number formats), ``console`` (progress lines),
``venv`` (re-running under the project's venv). Importing the package
imports none of them, so ``__main__`` can point a python without httpx at
the project's venv first. ``ops.soak`` reuses these modules.
"""
