"""The ``vault`` command line, run as a real process."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.service import CONFIG_NAMES, run_cli, vault_env

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
