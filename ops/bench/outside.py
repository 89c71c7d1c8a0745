"""``python -m ops.bench outside``: what the ledger's outside parties cost, as figures.

    .venv/bin/python -m ops.bench outside          # or make bench-outside

Figures only, no targets. Two sections, each on its own processes, all
stopped (SIGTERM, then SIGKILL) before the next section, however it ends:

1. *Witnessing*: two real ``vault witness serve`` following a log key made
   here, one ``vault serve`` listing both (quorum 2, ``--interval`` s between
   checkpoints). ``--uploads`` (50) 2 KB documents one at a time, each
   waited for until ``/healthz/actors/ledger`` shows it published. Per
   checkpoint: ``checkpoint_signed`` to ``checkpoint_published`` in the
   server's JSON log (structlog ISO timestamps); also the client's view
   (upload answered to published, health polled every 20 ms) and each
   witness's ``latency_ms`` from health at the end. Count, p50/p90/p99, max.
2. *Anchors*: ``vault serve`` with the suite's local RFC 3161 TSA
   (``tests.tsa.local_tsa``, ``openssl ts -reply``) and a ganache chain
   (``tests.ganache.running_ganache``, chain id 1337), intervals 1 s;
   ``--anchor-uploads`` (3) documents, then the last one's receipt is polled
   until it carries an anchor of each kind. Figures: the receipt's bytes with
   both anchors and without (the same JSON with ``"anchors": []``, re-encoded
   with orjson as the server does; the report says if that did not
   reproduce the served bytes), each anchor entry's bytes, the token's, the
   anchor transaction's gasUsed and a day's cost at the default intervals
   (3600 s: at most 24 anchors and 24 TSA requests a day) at 1, 10, 30 gwei.

Importing ``tests.tsa`` and ``tests.ganache`` (and so pytest) from ``ops``
is acceptable here: the bench runs from the repository root in the dev
venv, and they are the suite's own local TSA and chain, imported only when
the anchor section runs. Without openssl, or node and ``tools/ganache``
(``make tools``), that part is reported as not measured, with the reason.

Tables on stdout (or ``--json``), progress on stderr; exit 2 if a section failed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx

from ops.bench.console import BenchError, progress, set_quiet
from ops.bench.outside_run import (
    ORIGIN,
    AnchorEntry,
    AnchorRun,
    Client,
    Quantiles,
    WitnessRun,
    log_identity,
    poll,
    start_server,
    witness_run,
)
from ops.bench.units import format_table
from vault.config import Settings

GWEI = (1, 10, 30)
DAY_S = 86400.0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.bench outside",
        description="Figures of the ledger's outside parties: checkpoint-to-cosigned latency"
        " with two witnesses, and the anchors' receipt sizes, gas and daily cost.",
    )
    p.add_argument("--uploads", type=_positive, default=50,
                   help="uploads, one at a time, for the witnessing latency (default 50)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="LEDGER_CHECKPOINT_INTERVAL_SECONDS of the witnessed server (default 1)")
    p.add_argument("--anchor-uploads", type=_positive, default=3,
                   help="uploads before waiting for the anchors (default 3)")
    p.add_argument("--no-witnesses", action="store_true", help="skip the witnessing section")
    p.add_argument("--no-anchors", action="store_true", help="skip the anchor section")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p  # fmt: skip


# --------------------------------------------------------------------------- anchors


def _skip_reason(check: Callable[[], object]) -> str | None:
    """None when ``check`` (tests.tsa.require_openssl, tests.ganache.require_ganache)
    passes; else the reason it gave (it raises pytest's skip, or fail under CI=true)."""
    import pytest

    try:
        check()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return str(exc.msg if hasattr(exc, "msg") else exc)
    return None


def anchor_run(
    stack: contextlib.ExitStack, folder: Path, uploads: int, notes: list[str]
) -> AnchorRun | str:
    """vault serve with the local TSA and ganache; the receipt's sizes and the gas.

    A str is the reason nothing was measured (neither openssl nor ganache).
    """
    # Through importlib, so that mypy (strict on ops/) does not follow into tests/.
    tsa_module: Any = importlib.import_module("tests.tsa")
    chain_module: Any = importlib.import_module("tests.ganache")
    local_tsa, require_openssl = tsa_module.local_tsa, tsa_module.require_openssl
    running_ganache, require_ganache = chain_module.running_ganache, chain_module.require_ganache

    missing: list[str] = []
    settings = {"LEDGER_SIGNING_KEY": log_identity()[1], "LEDGER_ORIGIN": ORIGIN}
    kinds: list[str] = []
    chain = None
    why = _skip_reason(require_openssl)
    if why is None:
        tsa = stack.enter_context(local_tsa(folder / "tsa", "Bench"))
        progress(f"local TSA (openssl ts -reply) on {tsa.url}")
        settings.update(
            LEDGER_TSA_URL=tsa.url,
            LEDGER_TSA_CERTS=str(tsa.pki.ca_path),
            LEDGER_TIMESTAMP_INTERVAL_SECONDS="1",
        )
        kinds.append("rfc3161")
    else:
        missing.append(f"rfc3161: {why}")
    why = _skip_reason(require_ganache)
    if why is None:
        import pytest

        try:
            chain = stack.enter_context(running_ganache())
        except pytest.fail.Exception as exc:  # a BaseException: ganache exited
            raise BenchError(f"ganache did not start: {exc}") from None
        progress(f"ganache on {chain.url}")
        settings.update(
            BLOCKCHAIN_ENDPOINT_URL=chain.url,
            BLOCKCHAIN_PRIVATE_KEY=chain.private_key,
            BLOCKCHAIN_CHAIN_ID=str(chain.chain_id),
            LEDGER_ANCHOR_INTERVAL_SECONDS="1",
        )
        kinds.append("evm")
    else:
        missing.append(f"evm: {why}")
    if not kinds:
        return "; ".join(missing)
    settings["LEDGER_CHECKPOINT_INTERVAL_SECONDS"] = "0.2"
    server = start_server(stack, folder / "vault", settings, notes)
    client = Client(server.url)
    stack.callback(client.close)
    ids = [client.upload() for _ in range(uploads)]
    answered = time.monotonic()
    progress(f"{uploads} uploads; waiting for a receipt carrying {' and '.join(kinds)} anchors")

    def anchored() -> httpx.Response | None:
        if server.exited() is not None:
            raise BenchError(f"vault serve exited with {server.exited()}")
        r = client.receipt(ids[-1])
        if r is None or {a["type"] for a in r.json()["anchors"]} < set(kinds):
            return None
        return r

    found = poll(anchored, f"a receipt with {' and '.join(kinds)} anchors")
    wait = time.monotonic() - answered
    return _anchor_figures(found, kinds, missing, uploads, wait, chain)


def _anchor_figures(
    found: httpx.Response, kinds: list[str], missing: list[str], uploads: int, wait: float,
    chain: Any,
) -> AnchorRun:  # fmt: skip
    import orjson

    body = found.json()
    exact = len(orjson.dumps(body)) == len(found.content)
    stripped = len(orjson.dumps({**body, "anchors": []}))
    entries = tuple(
        AnchorEntry(a["type"], len(orjson.dumps(a)), int(a["checkpoint"].split("\n")[1]))
        for a in body["anchors"]
    )
    token = next((a["token"] for a in body["anchors"] if a["type"] == "rfc3161"), None)
    evm = next((a for a in body["anchors"] if a["type"] == "evm"), None)
    gas = price = calldata = None
    if evm is not None and chain is not None:
        tx = chain.rpc("eth_getTransactionReceipt", evm["tx_hash"])
        gas = int(tx["gasUsed"], 16)
        price = int(tx["effectiveGasPrice"], 16) if tx.get("effectiveGasPrice") else None
        sent = chain.rpc("eth_getTransactionByHash", evm["tx_hash"])
        calldata = (len(sent["input"]) - 2) // 2
    return AnchorRun(
        uploads=uploads, kinds=tuple(kinds), missing=tuple(missing), wait_s=wait,
        receipt_bytes_with=len(found.content), receipt_bytes_without=stripped,
        without_exact=exact, entries=entries,
        token_bytes=None if token is None else len(base64.b64decode(token)),
        token_b64_chars=None if token is None else len(token),
        tx_hash=None if evm is None else evm["tx_hash"], gas_used=gas,
        effective_gas_price_wei=price, calldata_bytes=calldata,
    )  # fmt: skip


# --------------------------------------------------------------------------- report


@attrs.frozen
class OutsideReport:
    machine: Any  # ops.bench.records.Machine
    witnessing: WitnessRun | None
    anchors: AnchorRun | None
    why: dict[str, str]  # section -> why it has no figures
    notes: tuple[str, ...]
    wall_s: float


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _quantile_row(title: str, q: Quantiles) -> list[str]:
    return [title, str(q.count), _ms(q.p50_ms), _ms(q.p90_ms), _ms(q.p99_ms), _ms(q.max_ms)]


def _witnessing(w: WitnessRun) -> list[str]:
    out = [
        f"Witnessing: 2 witnesses (vault witness serve), quorum {w.quorum}, checkpoint"
        f" interval {w.interval_s:g} s, {w.uploads} uploads one at a time",
        f"  checkpoints signed {w.signed}, published {w.published}",
        format_table(
            ["latency (ms)", "count", "p50", "p90", "p99", "max"],
            [
                _quantile_row("signed -> published (server log)", w.signed_to_published),
                _quantile_row("upload answered -> published (client)", w.upload_to_published),
            ],
        ),
        "  per witness, /healthz/actors/ledger at the end:",
        format_table(
            ["witness", "latency_ms", "cosigned_size", "cosignatures", "failures", "last_error"],
            [
                [r.name, _ms(r.latency_ms), str(r.cosigned_size), str(r.cosignatures),
                 str(r.failures), r.last_error or "-"]
                for r in w.witnesses
            ],
        ),
    ]
    if w.receipt_bytes is not None:
        out.append(f"  receipt JSON with 2 cosignatures, no anchors: {w.receipt_bytes:,} bytes")
    return out


def _anchors(a: AnchorRun) -> list[str]:
    defaults = Settings()
    out = [
        f"Anchors: {' + '.join(a.kinds)}, intervals 1 s, {a.uploads} uploads; a receipt"
        f" carrying every anchor {a.wait_s:.2f} s after the last upload",
        format_table(
            ["receipt JSON", "bytes"],
            [
                ["without anchors" + ("" if a.without_exact else " (re-encoded, approx.)"),
                 f"{a.receipt_bytes_without:,}"],
                [f"with {' + '.join(a.kinds)}", f"{a.receipt_bytes_with:,}"],
                *([f"  anchor entry {e.kind} (checkpoint {e.checkpoint_size})",
                   f"{e.json_bytes:,}"] for e in a.entries),
                *([["  rfc3161 token (DER)", f"{a.token_bytes:,}"],
                   ["  rfc3161 token (base64 chars)", f"{a.token_b64_chars:,}"]]
                  if a.token_bytes is not None and a.token_b64_chars is not None else []),
            ],
        ),
    ]  # fmt: skip
    if a.gas_used is not None:
        per_day = DAY_S / defaults.ledger_anchor_interval_seconds
        gas_day = a.gas_used * per_day
        price = (
            "n/a" if a.effective_gas_price_wei is None
            else f"{a.effective_gas_price_wei / 1e9:g} gwei"
        )
        out += [
            f"  evm anchor tx {a.tx_hash}: gasUsed {a.gas_used:,}, calldata"
            f" {a.calldata_bytes} bytes, ganache's effective gas price {price}",
            f"  at the default LEDGER_ANCHOR_INTERVAL_SECONDS"
            f" {defaults.ledger_anchor_interval_seconds:g} s: at most {per_day:g} anchors/day,"
            f" {gas_day:,.0f} gas/day",
            format_table(
                ["gas price", "ETH/anchor", "ETH/day", "ETH/year"],
                [[f"{g} gwei", f"{a.gas_used * g / 1e9:.6f}", f"{gas_day * g / 1e9:.6f}",
                  f"{gas_day * g * 365 / 1e9:.4f}"] for g in GWEI],
            ),
        ]  # fmt: skip
    if a.token_bytes is not None:
        per_day = DAY_S / defaults.ledger_timestamp_interval_seconds
        out.append(
            f"  at the default LEDGER_TIMESTAMP_INTERVAL_SECONDS"
            f" {defaults.ledger_timestamp_interval_seconds:g} s: at most {per_day:g} TSA"
            f" requests/day, {per_day * a.token_bytes:,.0f} token bytes/day"
        )
    out += [f"  not measured: {m}" for m in a.missing]
    return out


def render(report: OutsideReport) -> str:
    m = report.machine
    out = [
        "Document Vault outside-parties benchmark (figures, no targets)",
        f"  machine  {m.cpus} CPUs, {m.system}, Python {m.python}",
        "",
    ]
    if report.witnessing is not None:
        out += _witnessing(report.witnessing)
    else:
        out.append(f"Witnessing: not measured ({report.why.get('witnessing', 'not run')})")
    out.append("")
    if report.anchors is not None:
        out += _anchors(report.anchors)
    else:
        out.append(f"Anchors: not measured ({report.why.get('anchors', 'not run')})")
    out += ["", f"  run time {report.wall_s:.1f} s"]
    out += [f"  note: {n}" for n in report.notes]
    return "\n".join(out)


def to_json(report: OutsideReport) -> dict[str, Any]:
    return {
        "machine": attrs.asdict(report.machine),
        "witnessing": None if report.witnessing is None else attrs.asdict(report.witnessing),
        "anchors": None if report.anchors is None else attrs.asdict(report.anchors),
        "not_measured": report.why,
        "notes": list(report.notes),
        "wall_s": report.wall_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from ops.bench.cli import machine

    args = parser().parse_args(argv)
    if args.interval <= 0:
        parser().error("--interval must be positive")
    set_quiet(args.quiet)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="vault-bench-outside-"))
    why: dict[str, str] = {}
    notes: list[str] = []
    witnessing: WitnessRun | None = None
    anchors: AnchorRun | None = None

    def failed(section: str, exc: BaseException) -> None:
        why[section] = f"failed: {type(exc).__name__}: {exc}"
        print(f"bench: {section} {why[section]}", file=sys.stderr)

    try:
        if args.no_witnesses:
            why["witnessing"] = "--no-witnesses"
        else:
            try:
                with contextlib.ExitStack() as stack:
                    witnessing = witness_run(
                        stack, folder / "witnessing", args.uploads, args.interval, notes
                    )
            except (BenchError, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                failed("witnessing", exc)
        if args.no_anchors:
            why["anchors"] = "--no-anchors"
        else:
            try:
                with contextlib.ExitStack() as stack:
                    found = anchor_run(stack, folder / "anchors", args.anchor_uploads, notes)
                if isinstance(found, str):
                    why["anchors"] = found
                else:
                    anchors = found
            except Exception as exc:
                failed("anchors", exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = OutsideReport(
        machine=machine(),
        witnessing=witnessing,
        anchors=anchors,
        why=why,
        notes=tuple(notes),
        wall_s=time.monotonic() - started,
    )
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    return 2 if any(w.startswith("failed") for w in why.values()) else 0
