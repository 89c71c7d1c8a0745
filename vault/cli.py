"""The ``vault`` command: ``serve``, ``migrate``, ``check-config``, ``outbox``.

A bad configuration value ends any command with one line naming the
variable and exit code 2; no traceback.

``serve`` runs the HTTP layer, which sits above this module in the
dependency order: it is found through the ``document_vault.server`` entry
point that the package installs, not imported by name.

``outbox`` is for operators: parked events (those the queues refused for
good) stay until someone looks at them. ``list-parked`` shows them,
``requeue`` puts them back in line, ``drop --reason`` deletes them; each
requeue and drop is written to the log, a dropped event with its body, so
nothing leaves without a trace. ``requeue`` and ``drop`` exit 1 when an id
is not a parked row (the others are still done).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from vault.config import Settings
from vault.domain.errors import ConfigError, DependencyUnavailable
from vault.ports import ParkedRow

SERVER_ENTRY_POINTS = "document_vault.server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vault", description="Document Vault service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run every actor and the HTTP API until SIGTERM/SIGINT")
    commands.add_parser("migrate", help="apply the database schema and exit")
    commands.add_parser(
        "check-config", help="print the effective configuration (secrets masked) and exit"
    )
    _add_outbox_commands(commands)
    args = parser.parse_args(argv)
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


def _server() -> Callable[[Settings], int] | None:
    """``vault_http.serve.run`` as the installed package names it; None when it is not there."""
    found = entry_points(group=SERVER_ENTRY_POINTS, name="serve")
    if not found:
        return None
    (entry,) = found
    run: Callable[[Settings], int] = entry.load()
    return run


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

