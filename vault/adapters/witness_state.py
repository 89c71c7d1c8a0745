"""The witness's state and key on disk: SQLite for what it cosigned, a file for its key.

``WitnessStateStore`` keeps one row per origin: the size and root hash of
the latest checkpoint cosigned (the size as decimal text: tree sizes reach
``2**64 - 1``, SQLite integers only ``2**63 - 1``), that checkpoint with its cosignatures (the
note for ``GET <origin hash>/checkpoint``), and when it was stored.
``check_and_store(origin, decide)`` is the atomic compare-and-set the
protocol needs: in one ``BEGIN IMMEDIATE`` transaction it reads the row,
calls the pure ``decide`` with it, and stores the new state only when the
answer is ``Accepted``; SQLite's single write lock means two requests from
the same old size cannot both advance. Every method blocks: call it from
Trio through ``trio.to_thread.run_sync``. Each call opens its own
connection, so any thread may call.

``load_or_create_cosigner_key`` reads the witness key string, making it
(mode 0600, published atomically with ``os.link`` as ``key_files`` does)
on first use. File problems are ``ConfigError`` naming ``WITNESS_KEY_FILE``
or ``WITNESS_DB``.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.cosignature import CosignerKey
from vault.domain.errors import ConfigError
from vault.domain.note import NoteError
from vault.domain.witness import Accepted, Outcome, WitnessedState

_KEY_VARIABLE = "WITNESS_KEY_FILE"
_DB_VARIABLE = "WITNESS_DB"
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,
    root_hash BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at REAL NOT NULL
)
"""

Decide = Callable[[WitnessedState | None], Outcome]


class WitnessStateStore:
    """The latest cosigned state per origin, in the SQLite file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            for created in make_private_dirs(path.parent):
                fsync_dir(created.parent)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(_DB_VARIABLE, f"cannot open {path}: {exc}") from exc

    def _connect(self) -> _Connection:
        return _Connection(self.path)

    def state(self, origin: str) -> WitnessedState | None:
        """The size and root last cosigned for ``origin``; ``None`` if never."""
        with self._connect() as conn:
            return _read(conn, origin)

    def checkpoint(self, origin: str) -> str | None:
        """The cosigned checkpoint note last stored for ``origin``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT checkpoint FROM witnessed WHERE origin = ?", (origin,)
            ).fetchone()
        return None if row is None else str(row[0])

    def check_and_store(self, origin: str, decide: Decide) -> Outcome:
        """``decide`` on the stored state and, if ``Accepted``, store its state: atomically."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcome = decide(_read(conn, origin))
                if isinstance(outcome, Accepted):
                    conn.execute(
                        "INSERT INTO witnessed (origin, size, root_hash, checkpoint, updated_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET"
                        " size = excluded.size, root_hash = excluded.root_hash,"
                        " checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
                        (origin, str(outcome.state.size), outcome.state.root_hash, outcome.note,
                         time.time()),
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return outcome


class _Connection:
    """A connection in autocommit mode (transactions are explicit), closed on exit."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _read(conn: sqlite3.Connection, origin: str) -> WitnessedState | None:
    row = conn.execute(
        "SELECT size, root_hash FROM witnessed WHERE origin = ?", (origin,)
    ).fetchone()
    return None if row is None else WitnessedState(int(row[0]), bytes(row[1]))


def load_or_create_cosigner_key(path: Path, name: str) -> CosignerKey:
    """The witness key in ``path``, made for ``name`` (mode 0600) if the file is missing."""
    try:
        return _read_key(path, name)
    except FileNotFoundError:
        pass
    try:
        for created in make_private_dirs(path.parent):
            fsync_dir(created.parent)
        _publish_new_key(path, name)
    except OSError as exc:
        raise ConfigError(_KEY_VARIABLE, f"cannot create key file {path}: {exc.strerror}") from exc
    return _read_key(path, name)


def _read_key(path: Path, name: str) -> CosignerKey:
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(_KEY_VARIABLE, f"cannot read key file {path}: {exc}") from exc
    try:
        key = CosignerKey.parse(text)
    except NoteError as exc:
        raise ConfigError(_KEY_VARIABLE, f"key file {path} holds no witness key: {exc}") from None
    if key.name != name:
        raise ConfigError(
            "WITNESS_NAME", f"is {name!r} but the key in {path} is named {key.name!r}"
        )
    return key


def _publish_new_key(path: Path, name: str) -> None:
    """Write a fresh key under a temp name and link it to ``path`` unless one exists."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(CosignerKey.generate(name).format() + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return  # another process won the race; its key is the key
        fsync_dir(path.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
