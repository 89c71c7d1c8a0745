"""The ``vault`` command: ``serve``, ``migrate``, ``check-config``.

A bad configuration value ends any command with one line naming the
variable and exit code 2; no traceback.

``serve`` runs the HTTP layer, which sits above this module in the
dependency order: it is found through the ``document_vault.server`` entry
point that the package installs, not imported by name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from vault.config import Settings
from vault.domain.errors import ConfigError, DependencyUnavailable

SERVER_ENTRY_POINTS = "document_vault.server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vault", description="Document Vault service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run every actor and the HTTP API until SIGTERM/SIGINT")
    commands.add_parser("migrate", help="apply the database schema and exit")
    commands.add_parser(
        "check-config", help="print the effective configuration (secrets masked) and exit"
    )
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
