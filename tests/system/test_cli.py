"""The ``vault`` command line, run as a real process."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.system.service import CONFIG_NAMES, run_cli, vault_env
from tests.vault.store_helpers import BASE, make_event
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.events import Destination, OutboxEvent
from vault.domain.note import Verifier

pytestmark = pytest.mark.system


def base_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = vault_env(VAULT_DATA_DIR=str(tmp_path / "data"), ENVIRONMENT="test")
    env.update(overrides)
    return env


class TestCheckConfig:
    def test_prints_every_variable_with_secrets_masked(self, tmp_path: Path) -> None:
        """One NAME=value line per variable, the database password shown as ****."""
        result = run_cli("check-config", env=base_env(
            tmp_path, DATABASE_URL="postgresql://u:secret@h/db",
            AWS_SECRET_ACCESS_KEY="also-secret",
        ))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line) for line in lines), lines
        values = dict(line.split("=", 1) for line in lines)
        assert set(values) == CONFIG_NAMES
        assert values["DATABASE_URL"] == "postgresql://u:****@h/db"
        assert values["AWS_SECRET_ACCESS_KEY"] == "****"
        assert "secret" not in result.stdout

    @pytest.mark.parametrize(
        ("variable", "value", "named"),
        [
            ("PORT", "abc", "PORT"),
            ("PRESIGNED_URL_EXPIRATION_SECONDS", "4000", "PRESIGNED_URL_EXPIRATION_SECONDS"),
            ("ENVIRONMENT", "prod", "JWT_PUBLIC_KEY"),
            ("LEDGER_SIGNING_KEY", "-----BEGIN PRIVATE KEY-----", "LEDGER_SIGNING_KEY"),
            ("LEDGER_ORIGIN", "two words", "LEDGER_ORIGIN"),
        ],
    )
    def test_bad_value_is_one_line_naming_the_variable(
        self, tmp_path: Path, variable: str, value: str, named: str
    ) -> None:
        """An invalid value exits non-zero with one line that names the variable, no traceback."""
        result = run_cli("check-config", env=base_env(tmp_path, **{variable: value}))
        assert result.returncode != 0
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert named in lines[0]
        assert "Traceback" not in result.stderr


class TestMigrate:
    def test_creates_the_sqlite_database(self, tmp_path: Path) -> None:
        """``vault migrate`` exits 0 and leaves the SQLite file under VAULT_DATA_DIR."""
        result = run_cli("migrate", env=base_env(tmp_path))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "data" / "vault.sqlite3").is_file()


class TestLedgerKey:
    def test_prints_the_verifier_key_of_the_log(self, tmp_path: Path) -> None:
        """After migrate, ``vault ledger key`` prints the key string checkpoints verify with,
        the same on every run (the key file and the log id are kept)."""
        env = base_env(tmp_path)
        assert run_cli("migrate", env=env).returncode == 0
        first, again = run_cli("ledger", "key", env=env), run_cli("ledger", "key", env=env)
        assert first.returncode == 0, first.stderr
        key = first.stdout.strip()
        assert first.stdout == again.stdout == key + "\n"
        verifier = Verifier.parse(key)
        assert re.fullmatch(r"document-vault\.local/[0-9a-f]{16}", verifier.name)
        key_file = tmp_path / "data" / "keys" / "ledger-signing.key"
        assert key_file.stat().st_mode & 0o777 == 0o600

    def test_a_configured_origin_needs_no_database(self, tmp_path: Path) -> None:
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ).decode()
        env = base_env(tmp_path, LEDGER_ORIGIN="vault.example.com/prod", LEDGER_SIGNING_KEY=pem)
        result = run_cli("ledger", "key", env=env)
        assert result.returncode == 0, result.stderr
        assert Verifier.parse(result.stdout.strip()).name == "vault.example.com/prod"
        assert not (tmp_path / "data" / "vault.sqlite3").exists()

    def test_a_bad_key_is_one_line(self, tmp_path: Path) -> None:
        result = run_cli("ledger", "key", env=base_env(tmp_path, LEDGER_SIGNING_KEY="nope"))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "LEDGER_SIGNING_KEY" in result.stderr


class TestServe:
    def test_occupied_port_is_one_clear_line(self, tmp_path: Path) -> None:
        """``vault serve`` on a port already in use exits non-zero with one line, no traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [sys.executable, "-m", "vault", "serve"],
                env=base_env(tmp_path, HOST="127.0.0.1", PORT=str(port)),
                capture_output=True, text=True, timeout=30, check=False,
            )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert str(port) in lines[0]
        assert "in use" in lines[0]


def parked_outbox(data_dir: Path, count: int) -> list[OutboxEvent]:
    """A migrated store under ``data_dir`` with ``count`` parked events and one pending."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteMetadataStore(data_dir / "vault.sqlite3")
    try:
        store.migrate()
        events = [make_event() for _ in range(count + 1)]
        store.append_events(events)
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], count + 1, BASE, 30)
        for row in rows[:count]:
            store.park(row.id, "InvalidParameterValue:\n message too long", BASE)
    finally:
        store.close()
    return events


def outbox_state(data_dir: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(data_dir / "vault.sqlite3")
    try:
        rows = conn.execute("SELECT id, parked_at FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return {
        "parked": [row_id for row_id, parked_at in rows if parked_at is not None],
        "pending": [row_id for row_id, parked_at in rows if parked_at is None],
    }


def log_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


class TestOutbox:
    def test_list_parked_prints_each_parked_event(self, tmp_path: Path) -> None:
        """One tab-separated line per parked event under a header, its error on one line."""
        events = parked_outbox(tmp_path / "data", 2)
        result = run_cli("outbox", "list-parked", env=base_env(tmp_path))
        assert result.returncode == 0, result.stderr
        header, *lines = result.stdout.splitlines()
        assert header.split("\t") == [
            "id", "destination", "event_id", "parked_at", "attempts", "last_error",
        ]  # fmt: skip
        assert [line.split("\t")[2] for line in lines] == [str(e.event_id) for e in events[:2]]
        assert lines[0].split("\t")[5] == "InvalidParameterValue: message too long"

    def test_requeue_puts_parked_events_back_in_line_and_logs_them(self, tmp_path: Path) -> None:
        """Requeued events leave the parked set, each with an outbox_row_requeued line."""
        data = tmp_path / "data"
        parked_outbox(data, 2)
        first, second = outbox_state(data)["parked"]
        result = run_cli("outbox", "requeue", str(first), env=base_env(tmp_path))
        assert result.returncode == 0, result.stderr
        assert outbox_state(data)["parked"] == [second]
        (line,) = [e for e in log_events(result.stdout) if e["event"] == "outbox_row_requeued"]
        assert line["row_id"] == first
        assert "requeued 1 parked event(s)" in result.stdout

    def test_drop_needs_a_reason_and_logs_the_event_it_removes(self, tmp_path: Path) -> None:
        """Dropping deletes the row and logs its body with the reason; no reason, no drop."""
        data = tmp_path / "data"
        events = parked_outbox(data, 1)
        (row_id,) = outbox_state(data)["parked"]
        refused = run_cli("outbox", "drop", str(row_id), env=base_env(tmp_path))
        assert refused.returncode == 2
        assert outbox_state(data)["parked"] == [row_id]

        result = run_cli(
            "outbox", "drop", str(row_id), "--reason", "consumer gone (CHG-42)",
            env=base_env(tmp_path),
        )
        assert result.returncode == 0, result.stderr
        assert outbox_state(data)["parked"] == []
        (line,) = [e for e in log_events(result.stdout) if e["event"] == "outbox_row_dropped"]
        assert line["reason"] == "consumer gone (CHG-42)"
        assert line["event_id"] == str(events[0].event_id)
        assert line["body"] == events[0].body

    def test_ids_that_are_not_parked_are_named_and_fail(self, tmp_path: Path) -> None:
        """A pending row's id or an unknown id is left alone, named, and exits 1."""
        data = tmp_path / "data"
        parked_outbox(data, 1)
        state = outbox_state(data)
        (parked,), (pending,) = state["parked"], state["pending"]
        result = run_cli(
            "outbox", "requeue", str(parked), str(pending), "999", env=base_env(tmp_path)
        )
        assert result.returncode == 1
        assert f"not parked events: {pending} 999" in result.stderr
        assert outbox_state(data) == {"parked": [], "pending": [parked, pending]}

    @pytest.mark.parametrize("bad", ["0", "-3", "seven"])
    def test_ids_must_be_positive_numbers(self, tmp_path: Path, bad: str) -> None:
        """A bad id is a usage error (exit 2) naming it, before anything is opened."""
        result = run_cli("outbox", "requeue", bad, env=base_env(tmp_path))
        assert result.returncode == 2
        assert repr(bad) in result.stderr
        assert not (tmp_path / "data").exists()
