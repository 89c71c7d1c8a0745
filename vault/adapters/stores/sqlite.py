"""The embedded ``MetadataStore``: one SQLite file, shared by threads and processes.

The queries and methods are ``core.SqlMetadataStore``'s; this dialect adds
what is SQLite's own.

*Connections*: a small pool. A call borrows an idle connection (or opens
one) and gives it back when it is done, so there are never more open than
calls at once, at most ``MAX_IDLE_CONNECTIONS`` stay open while idle, and
a worker thread that ends leaves nothing open behind it. (One connection a
thread, kept for the thread's life, left a connection and its two file
descriptors behind each time Trio retired an idle worker thread.) Every
connection runs in WAL mode with ``synchronous=FULL``, a 10 s busy timeout
and foreign keys on.

*Transactions*: every write, one statement or several, is one ``BEGIN
IMMEDIATE`` transaction, so writers queue on SQLite's write lock instead of
failing half-way, and a read made inside the transaction cannot be
overtaken by another writer, in this process or another one sharing the
file. That lock is also what serialises log integration and cascade
batches: the core's ``_lock_cascade`` has nothing left to do here, and
``{for_update}`` / ``{skip_locked}`` are empty. Any error rolls the
transaction back.

*Errors*: no ``sqlite3`` exception leaves a public method; driver errors
become ``StoreUnavailable``.

*Encoding*: UUIDs are lowercase canonical text, timestamps ISO 8601 UTC text
with microseconds (fixed width, so text order is time order), JSON as text.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from vault.adapters.stores.core import SqlMetadataStore
from vault.adapters.stores.ledger import open_log
from vault.adapters.stores.sql import Session
from vault.adapters.stores.sqlite_schema import SCHEMA, SCHEMA_VERSION
from vault.domain.errors import StoreUnavailable
from vault.ports import MetadataStore

BUSY_TIMEOUT_SECONDS: Final = 10.0
MAX_IDLE_CONNECTIONS: Final = 8
"""Idle connections kept open for the next calls; the database limiter's width."""
_AS_IS: Final = frozenset({str, int, float, bytes, type(None)})
"""Types bound as they are: checked first, since most values are one of them."""


class SQLiteDialect:
    """SQLite's spelling: ``:name`` placeholders, values as text."""

    name = "sqlite"
    fragments: Mapping[str, str] = {"for_update": "", "skip_locked": ""}

    def placeholder(self, name: str) -> str:
        return f":{name}"

    def escape(self, sql: str) -> str:
        return sql

    def encode(self, value: object) -> object:
        if type(value) in _AS_IS:
            return value
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, uuid.UUID):
            return encode_uuid(value)
        if isinstance(value, datetime):
            return encode_timestamp(value)
        if isinstance(value, Mapping):
            return encode_json(value)
        return value


class SQLiteMetadataStore(SqlMetadataStore):
    """``MetadataStore`` on one SQLite file.

    Safe to call from any number of threads at once, and from several
    processes sharing the file (the write lock serialises their transactions).
    """

    dialect = SQLiteDialect()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._registry_lock = threading.Lock()
        self._connections: set[sqlite3.Connection] = set()
        """Every connection open now, idle or borrowed."""
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteMetadataStore({str(self.path)!r})"

    # -- lifecycle -------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run any number of times, at once."""
        with _sqlite_errors("migrate"), self._begin_immediate() as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            now = datetime.now(UTC)
            applied = {
                version: conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
                    " ON CONFLICT (version) DO NOTHING",
                    (version, encode_timestamp(now)),
                ).rowcount
                == 1
                for version in range(1, SCHEMA_VERSION + 1)
            }
            if applied[1]:
                # A database created by the service this one replaces holds
                # documents but no claims: give its live documents their guard.
                conn.execute(
                    "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
                    " SELECT entity_id, sha256_hash, id FROM documents"
                    " WHERE status != 'archived'"
                    " ORDER BY created_at, id"
                    " ON CONFLICT (entity_id, sha256_hash) DO NOTHING"
                )
            # The log opens with the hash chain's entries, once.
            open_log(Session(conn.cursor(), self.dialect), now, first_migration=applied[2])

    def size_limit(self) -> int:
        """SQLite's INTEGER holds any 64-bit signed value."""
        return 2**63 - 1

    def ping(self) -> None:
        with _sqlite_errors("ping"), self._borrowed() as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        """Close the idle connections now, and each borrowed one as it comes back."""
        with self._registry_lock:
            self._closed = True
            connections, self._idle = self._idle, []
            self._connections.difference_update(connections)
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- the core's hooks ----------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, operation: str) -> Iterator[Session]:
        with _sqlite_errors(operation), self._borrowed() as conn:
            yield Session(conn.cursor(), self.dialect)

    def _statement(self, operation: str) -> contextlib.AbstractContextManager[Session]:
        return self._transaction(operation)

    @contextlib.contextmanager
    def _transaction(self, operation: str) -> Iterator[Session]:
        with _sqlite_errors(operation), self._begin_immediate() as conn:
            yield Session(conn.cursor(), self.dialect)

    def _lock_cascade(self, db: Session, event_id: str) -> None:
        """Nothing to take: ``BEGIN IMMEDIATE`` holds the only write lock."""

    # -- connections -----------------------------------------------------

    @contextlib.contextmanager
    def _borrowed(self) -> Iterator[sqlite3.Connection]:
        """A connection for one call: an idle one, or a new one; given back afterwards."""
        with self._registry_lock:
            if self._closed:
                raise StoreUnavailable(f"{self!r} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        usable = True
        try:
            yield conn
        except BaseException:
            usable = not conn.in_transaction  # a rollback that failed leaves it unknown
            raise
        finally:
            self._give_back(conn, usable=usable)

    def _give_back(self, conn: sqlite3.Connection, *, usable: bool) -> None:
        with self._registry_lock:
            keep = usable and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
            if keep:
                self._idle.append(conn)
            else:
                self._connections.discard(conn)
        if not keep:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _open(self) -> sqlite3.Connection:
        # check_same_thread is off because a pooled connection serves one
        # thread after another (never two at once), and ``close`` may close
        # it from yet another; the module is built thread-safe.
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = _mapping_row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            # WAL is a property of the file: switch only when needed, as the
            # switch itself wants the file to itself.
            mode = conn.execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode["journal_mode"]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            with self._registry_lock:
                if self._closed:
                    raise StoreUnavailable(f"{self!r} is closed")
                self._connections.add(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _begin_immediate(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""
        with self._borrowed() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                raise


if TYPE_CHECKING:
    _conforms: type[MetadataStore] = SQLiteMetadataStore


@contextlib.contextmanager
def _sqlite_errors(operation: str) -> Iterator[None]:
    """Turn every driver error into ``StoreUnavailable``, keeping the cause."""
    try:
        yield
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise StoreUnavailable(f"metadata store failed during {operation}: {exc}") from exc


def _mapping_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


# -- encoding: this module's text representation --------------------------


def encode_uuid(value: uuid.UUID) -> str:
    """Lowercase canonical form (what ``str(UUID)`` gives)."""
    return str(value)


def encode_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: ``2025-10-23T12:34:56.789000+00:00``.

    Fixed width, so comparing the text compares the instants. Naive
    datetimes are refused: their instant is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def encode_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
