"""The ``vault`` command: ``serve``, ``migrate``, ``check-config``, ``outbox``,
``ledger key``, ``receipt verify``, ``ledger consistency`` and ``ledger monitor``.

``ledger key`` prints the verifier key string of the service's checkpoints
(what auditors are given to check receipts with): it reads the
configuration, and the database for the log id unless ``LEDGER_ORIGIN``
is set.

A bad configuration value ends any command that reads the configuration
with one line naming the variable and exit code 2; no traceback.

``receipt`` and the other ``ledger`` commands read no configuration and open no database, so
a broken environment does not touch them; they run before the settings are
read. ``receipt verify RECEIPT [--file PATH] --key KEY`` checks a receipt
(the receipt route's JSON or the bare tlog-proof text): the checkpoint's
signature by KEY (a verifier key string, or a file holding one), the
inclusion proof, and with ``--file`` that the file's SHA-256 is the leaf's;
its cosignatures with ``--witness KEY`` (repeatable) and ``--quorum N``, and
its anchors (``vault.offline_anchors``): always their checkpoints and
consistency, the RFC 3161 tokens with ``--tsa-cert FILE``, the EVM
transactions with ``--rpc URL`` (``--confirmations N``, the only network use).
``ledger consistency OLD NEW --proof PROOF --key KEY`` checks that the
signed checkpoint in NEW extends the one in OLD, PROOF holding the
consistency route's JSON. ``ledger monitor --url BASE --key KEY --state
FILE`` fetches the service's latest checkpoint, checks it against the one
saved in FILE and only then replaces FILE (see ``vault.offline_monitor``).
They exit 0 when every check passes, 1 with one ``invalid: …`` line naming
the check that failed, 2 with one ``vault: …`` line when the input cannot
be checked (a missing file, JSON that does not parse, a bad key, a network
error). The ``ok`` and ``invalid`` lines go to standard output, the ``vault:``
lines to standard error.

``serve`` runs the HTTP layer, which sits above this module in the
dependency order: it is found through the ``document_vault.server`` entry
point that the package installs, not imported by name.

``outbox`` is for operators: parked events (those the queues refused for
good) stay until someone looks at them. ``list-parked`` shows them,
``requeue`` puts them back in line, ``drop --reason`` deletes them; each
requeue and drop is written to the log, a dropped event with its body, so
nothing leaves without a trace. ``requeue`` and ``drop`` exit 1 when an id
is not a parked row (the others are still done).

``witness serve`` runs our own c2sp.org/tlog-witness (the ``witness`` entry
point of the HTTP layer) and ``witness key`` prints its cosignature verifier
key, making the key on first use; both read only the ``WITNESS_*`` variables
(``vault.witness_config``), never the service's configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.config import Settings
from vault.domain.errors import ConfigError, DependencyUnavailable
from vault.ports import ParkedRow

if TYPE_CHECKING:
    from vault.domain.note import Verifier

SERVER_ENTRY_POINTS = "document_vault.server"
OFFLINE_COMMANDS = frozenset({"receipt", "ledger"})
"""Commands that run before, and without, the configuration."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vault", description="Document Vault service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run every actor and the HTTP API until SIGTERM/SIGINT")
    commands.add_parser("migrate", help="apply the database schema and exit")
    commands.add_parser(
        "check-config", help="print the effective configuration (secrets masked) and exit"
    )
    _add_outbox_commands(commands)
    _add_receipt_commands(commands)
    _add_ledger_commands(commands)
    _add_witness_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "witness":
        return _witness(args)
    if args.command in OFFLINE_COMMANDS and getattr(args, "ledger_command", None) != "key":
        return _offline(args)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"vault: configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "check-config":
        for name, value in settings.describe():
            print(f"{name}={value}")
        return 0

    from vault.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "migrate":
            from vault.wiring import open_metadata_store

            store = open_metadata_store(settings)
            try:
                store.migrate()
            finally:
                store.close()
            print("schema is up to date")
            return 0
        if args.command == "outbox":
            return _outbox(settings, args)
        if args.command == "ledger":
            print(_verifier_key(settings))
            return 0

        run = _server()
        if run is None:
            print(
                "vault: the HTTP layer is not installed; reinstall the package"
                " (pip install -e . , or make serve)",
                file=sys.stderr,
            )
            return 2
        return run(settings)
    except ConfigError as exc:
        print(f"vault: configuration error: {exc}", file=sys.stderr)
        return 2
    except DependencyUnavailable as exc:
        print(f"vault: {exc.detail}", file=sys.stderr)
        return 1


def _server(name: str = "serve") -> Callable[[Any], int] | None:
    """``vault_http.serve.run`` (or the entry point ``name``) as the installed package names
    it; None when it is not there."""
    found = entry_points(group=SERVER_ENTRY_POINTS, name=name)
    if not found:
        return None
    (entry,) = found
    run: Callable[[Any], int] = entry.load()
    return run


def _add_witness_commands(commands: Any) -> None:
    witness = commands.add_parser("witness", help="run our own c2sp.org/tlog-witness")
    actions = witness.add_subparsers(dest="witness_command", required=True)
    actions.add_parser("serve", help="answer POST /add-checkpoint until SIGTERM/SIGINT")
    actions.add_parser("key", help="print the witness's cosignature verifier key")


def _witness(args: argparse.Namespace) -> int:
    """``witness serve`` or ``witness key``, configured by the ``WITNESS_*`` variables."""
    from vault.adapters.witness_state import load_or_create_cosigner_key
    from vault.witness_config import WitnessSettings

    try:
        settings = WitnessSettings.from_env(os.environ)
        if args.witness_command == "key":
            key = load_or_create_cosigner_key(settings.key_file, settings.name)
            print(key.verifier().format())
            return 0
        run = _server("witness")
        if run is None:
            print("vault: the HTTP layer is not installed; reinstall the package"
                  " (pip install -e .)", file=sys.stderr)
            return 2
        from vault.logs import configure_logging

        configure_logging()
        return run(settings)
    except ConfigError as exc:
        print(f"vault: configuration error: {exc}", file=sys.stderr)
        return 2


def _add_outbox_commands(commands: Any) -> None:
    outbox = commands.add_parser("outbox", help="review the events the queues refused for good")
    actions = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = actions.add_parser("list-parked", help="print parked events, oldest first")
    listing.add_argument("--limit", type=_positive, default=100, help="at most this many")
    requeue = actions.add_parser("requeue", help="put parked events back in line")
    requeue.add_argument("ids", type=_positive, nargs="+", metavar="ID")
    drop = actions.add_parser("drop", help="delete parked events for good (logged)")
    drop.add_argument("ids", type=_positive, nargs="+", metavar="ID")
    drop.add_argument("--reason", required=True, type=_reason, help="why, for the audit log")


def _add_receipt_commands(commands: Any) -> None:
    receipt = commands.add_parser("receipt", help="check a document's ledger receipt offline")
    actions = receipt.add_subparsers(dest="receipt_command", required=True)
    verify = actions.add_parser("verify", help="check a receipt's signature and inclusion proof")
    verify.add_argument("receipt", type=Path, metavar="RECEIPT",
                        help="the receipt route's JSON, or a tlog-proof")
    verify.add_argument("--file", type=Path, metavar="PATH",
                        help="also check that this file's SHA-256 is the leaf's")
    verify.add_argument("--key", required=True, metavar="KEY",
                        help="the log's verifier key, or a file holding it")
    verify.add_argument("--tsa-cert", type=Path, action="append", default=[], metavar="FILE",
                        help="check the rfc3161 anchors' tokens through these PEM certificates"
                             " (a root, and any intermediates; repeatable)")
    verify.add_argument("--witness", action="append", default=[], metavar="KEY",
                        help="a witness's cosigner verifier key, or a file holding it;"
                             " its cosignature on the checkpoint is checked (repeatable)")
    verify.add_argument("--quorum", type=int, metavar="N",
                        help="how many of the --witness keys must have cosigned (default: all)")
    verify.add_argument("--rpc", metavar="URL",
                        help="check the evm anchors' transactions at this JSON-RPC URL")
    verify.add_argument("--confirmations", type=_positive, metavar="N",
                        help="with --rpc, blocks each anchor's transaction needs (default 1)")


def _add_ledger_commands(commands: Any) -> None:
    ledger = commands.add_parser("ledger", help="check the ledger's checkpoints")
    actions = ledger.add_subparsers(dest="ledger_command", required=True)
    _add_ledger_consistency(actions)
    _add_ledger_monitor(actions)
    actions.add_parser("key", help="print the verifier key of this service's checkpoints")


def _verifier_key(settings: Settings) -> str:
    """The verifier key string: ``LEDGER_ORIGIN`` (or the log id in the database) and the
    public half of the signing key."""
    from vault.domain.log import origin_for
    from vault.domain.note import Signer
    from vault.wiring import ledger_signing_key, open_metadata_store

    key = ledger_signing_key(settings)
    origin = settings.ledger_origin
    if origin is None:
        store = open_metadata_store(settings)
        try:
            origin = origin_for(None, store.ledger_head().log_id)
        finally:
            store.close()
    return Signer.from_key(origin, key).verifier().format()


def _add_ledger_consistency(actions: Any) -> None:
    consistency = actions.add_parser(
        "consistency", help="check offline that checkpoint NEW extends checkpoint OLD"
    )
    consistency.add_argument("old", type=Path, metavar="OLD", help="a signed checkpoint")
    consistency.add_argument("new", type=Path, metavar="NEW", help="a later signed checkpoint")
    consistency.add_argument("--proof", type=Path, required=True, metavar="PROOF",
                             help="the consistency route's JSON")
    consistency.add_argument("--key", required=True, metavar="KEY",
                             help="the log's verifier key, or a file holding it")


def _add_ledger_monitor(actions: Any) -> None:
    monitor = actions.add_parser(
        "monitor", help="fetch the latest checkpoint and check it extends the saved one"
    )
    monitor.add_argument("--url", required=True, metavar="BASE",
                         help="the service's scheme://host:port")
    monitor.add_argument("--key", required=True, metavar="KEY",
                         help="the log's verifier key, or a file holding it")
    monitor.add_argument("--state", type=Path, required=True, metavar="FILE",
                         help="the last checkpoint that passed; replaced only when all checks do")


def _offline(args: argparse.Namespace) -> int:
    """Run a ``receipt`` or ``ledger`` command: one line out, exit 0, 1 or 2."""
    from vault import offline

    try:
        verifier = offline.load_verifier(args.key)
        if args.command == "receipt":
            from vault.offline_anchors import load_options

            options = load_options(
                tsa_certs=args.tsa_cert, witnesses=args.witness, quorum=args.quorum,
                rpc=args.rpc, confirmations=args.confirmations,
            )
            text = offline.read_text(args.receipt, "receipt")
            line = offline.verify_receipt(text, verifier, args.file, options=options)
        elif args.ledger_command == "consistency":
            line = offline.verify_consistency_files(args.old, args.new, args.proof, verifier)
        else:
            line = _monitor(args, verifier)
    except offline.CheckFailed as exc:
        print(_one_line(exc.line), file=sys.stdout if exc.code == offline.INVALID else sys.stderr)
        return exc.code
    except (OSError, ValueError) as exc:
        print(f"vault: {_one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return offline.UNUSABLE
    print(line)
    return 0


def _monitor(args: argparse.Namespace, verifier: Verifier) -> str:
    from vault.adapters.ledger_client import LedgerClient
    from vault.offline import unusable
    from vault.offline_monitor import monitor

    try:
        client = LedgerClient(args.url)
    except DependencyUnavailable as exc:
        raise unusable(exc.detail) from None
    with client:
        return monitor(client, verifier, args.state)


def _outbox(settings: Settings, args: argparse.Namespace) -> int:
    import structlog

    from vault.wiring import open_metadata_store

    log = structlog.get_logger("vault.outbox")
    store = open_metadata_store(settings)
    try:
        if args.outbox_command == "list-parked":
            print("id\tdestination\tevent_id\tparked_at\tattempts\tlast_error")
            for parked in store.parked_rows(args.limit):
                event = parked.row.event
                print(
                    f"{parked.row.id}\t{event.destination.value}\t{event.event_id}"
                    f"\t{parked.parked_at.isoformat()}\t{parked.row.attempts}"
                    f"\t{_one_line(parked.last_error)}"
                )
            return 0
        if args.outbox_command == "requeue":
            changed = store.requeue_parked(args.ids)
            for parked in changed:
                log.info("outbox_row_requeued", **_audit(parked))
            verb = "requeued"
        else:
            changed = store.drop_parked(args.ids)
            for parked in changed:
                log.warning(
                    "outbox_row_dropped", reason=args.reason, body=parked.row.event.body,
                    **_audit(parked),
                )
            verb = "dropped"
    finally:
        store.close()
    done = {parked.row.id for parked in changed}
    missing = [row_id for row_id in dict.fromkeys(args.ids) if row_id not in done]
    print(f"{verb} {len(done)} parked event(s)")
    if missing:
        print(f"vault: not parked events: {' '.join(map(str, missing))}", file=sys.stderr)
        return 1
    return 0


def _audit(parked: ParkedRow) -> dict[str, object]:
    event = parked.row.event
    return {
        "row_id": parked.row.id,
        "event_id": str(event.event_id),
        "destination": event.destination.value,
        "parked_at": parked.parked_at.isoformat(),
        "last_error": parked.last_error,
    }


def _one_line(text: str | None) -> str:
    return "" if text is None else " ".join(text.split())


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {raw!r}")
    return value


def _reason(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError("a reason is required")
    return raw.strip()

