"""Soak a Document Vault server: a long mixed workload, then memory, descriptors,
outbox and latency over time.

Run it as ``python -m ops.soak`` from the repository root (``make soak``).

Default mode spawns a fresh ``python -m vault serve`` on a free loopback port
with its data in a temporary folder (``ops.bench.server``), soaks it, stops it
with SIGTERM, counts the outbox rows in its SQLite file and removes the
folder. ``--url URL [--pid PID]`` soaks a server that already runs on this
machine instead (the /proc figures need its pid).

The run: SEED_DOCUMENTS uploads one at a time (not counted), then
``--requests`` requests from ``--clients`` concurrent clients in the order
``plan.schedule`` draws from the mix, each client on one keep-alive
connection. The run stops at two checkpoints with nothing in flight and the
same connections open: after the ``--warmup`` requests and at the end; /proc
and /metrics are read there (and before the run, and once idle after it).

Verdicts: RSS growth from the warm-up checkpoint to the end below
RSS_GROWTH_LIMIT_MIB, open descriptors at most FD_SLACK above, the last
window's p99 at most P99_RATIO_LIMIT times the first window's after the
warm-up, and every request answered as expected. Exit status: 0 when no
verdict failed, 1 when one did, 2 when the soak could not run.

Modules: ``cli`` (flags, the run), ``load`` (the requests and checkpoints),
``plan`` (the mix, the order, the marks), ``windows`` (per-window and
per-operation statistics), ``probe`` (/proc: RSS, descriptors, threads),
``metrics`` (/metrics and the SQLite outbox), ``records`` (the typed figures),
``report`` (verdicts, tables, JSON). The server, the percentiles, the upload
body and the number formats are ``ops.bench``'s.
"""
