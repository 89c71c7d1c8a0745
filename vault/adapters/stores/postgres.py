"""The ``MetadataStore`` on PostgreSQL, through psycopg 3's sync API and a pool.

The queries and methods are ``core.SqlMetadataStore``'s; this dialect adds
what is PostgreSQL's own. What a URL means is ``postgres_url``; the schema
and its migrations are ``postgres_schema``.

*Connections*: one ``psycopg_pool.ConnectionPool`` per store, opened without
waiting, so constructing a store never blocks on a database that is down:
the first call that needs a connection waits at most the pool ``timeout``
and then raises ``StoreUnavailable``. With ``pre_ping`` every connection is
checked as it leaves the pool, so one the server has dropped is replaced
instead of failing the call; either way a broken connection is discarded,
and the pool reconnects in the background once the database answers again.
psycopg's async API does not run under Trio: actors call these blocking
methods from worker threads, as for every adapter. A call that finds its
connection broken fails with ``StoreUnavailable`` and renews the pool's idle
connections, so the next call does not meet another dead one.

*Transactions*: connections run in autocommit; reads and one-statement
writes are single statements, and each change of several statements is one
explicit transaction (READ COMMITTED) that rolls back on any error.

*Concurrency across processes* (several replicas on one database):

- the duplicate guard is the primary key of ``document_hash_claims``
  (entity_id, sha256_hash): ``INSERT … ON CONFLICT DO NOTHING RETURNING``
  admits one live document per pair; a loser waits for the winner's commit
  and names it in ``DuplicateDocument``;
- log integration locks the tree row ``FOR UPDATE`` and reads the pending
  leaves in a statement that starts after the lock is held, so two
  processes never extend the same tree twice (``leaf_index`` is also
  unique, a second line of defence); a change writes its leaf without it;
- ``claim_outbox`` locks its rows with ``FOR UPDATE SKIP LOCKED`` and leases
  them in the same statement, so two publishers never get one row;
- ``archive_entity`` batches of one event take a transaction-level advisory
  lock on the event id (``_lock_cascade``: the two-key form, class
  ``CASCADE_LOCK_CLASS``) and check ``processed_events`` after it is held,
  so two deliveries never archive one document twice and only one writes
  the row;
- placing or adding to a legal hold and proposing or executing a
  disposition take one advisory lock (``_lock_records``, class
  ``RECORDS_LOCK_CLASS``), so a hold never lands between a disposition's
  check and its destruction;
- a document a transaction changes is read ``FOR UPDATE``;
- ``migrate`` runs under an advisory lock of its own.

*Errors*: no psycopg exception leaves a public method. A database that is
down or unreachable, a lost connection, a pool that cannot hand out a
connection in time, a closed store and any other driver error all become
``StoreUnavailable``, with the driver's exception as its cause.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from vault.adapters.stores import postgres_schema
from vault.adapters.stores.core import SqlMetadataStore
from vault.adapters.stores.ledger import open_log
from vault.adapters.stores.postgres_url import ConnectionSettings, connection_settings
from vault.adapters.stores.sql import Q, Session
from vault.domain.errors import StoreUnavailable
from vault.domain.models import DocumentType
from vault.ports import MetadataStore

__all__ = ["ConnectionSettings", "PostgresMetadataStore", "connection_settings"]

POOL_TIMEOUT_SECONDS: Final = 5.0
"""How long a call waits for a connection before ``StoreUnavailable``."""

# Advisory lock keys (bigint, database-wide): the ASCII of a short name.
# The two-key form (its own key space): this class, and a hash of the event id.
CASCADE_LOCK_CLASS: Final = int.from_bytes(b"vEVT", "big")

RETENTION_LOCK_CLASS: Final = int.from_bytes(b"vRET", "big")
"""With a hash of the document type: writers of one type's policy versions, one at a time."""

RECORDS_LOCK_CLASS: Final = int.from_bytes(b"vREC", "big")
"""With key 0: holds placed or added to, dispositions proposed and executed, one at a time."""

CASCADE_LOCK = Q("SELECT pg_advisory_xact_lock($lock_class, $key)")


_AS_IS: Final = frozenset({str, int, float, bytes, type(None)})
"""Types bound as they are: checked first, since most values are one of them."""


class PostgresDialect:
    """PostgreSQL's spelling: psycopg's ``%(name)s`` placeholders, native values."""

    name = "postgresql"
    fragments: Mapping[str, str] = {
        "for_update": " FOR UPDATE",
        "skip_locked": " FOR UPDATE SKIP LOCKED",
    }

    def placeholder(self, name: str) -> str:
        return f"%({name})s"

    def escape(self, sql: str) -> str:
        return sql.replace("%", "%%")

    def encode(self, value: object) -> object:
        if type(value) in _AS_IS:
            return value
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, datetime):
            return _aware(value)
        if isinstance(value, Mapping):
            return Jsonb(value)
        return value


class PostgresMetadataStore(SqlMetadataStore):
    """``MetadataStore`` on PostgreSQL.

    Safe to call from any number of threads at once (each call borrows a
    pooled connection), and from several processes on one database.

    ``url``: a ``DATABASE_URL`` (see the module docstring); a malformed one
    is a ``ValueError`` here, while an unreachable database is only noticed
    by the first call. ``pre_ping``: check each connection as it leaves the
    pool (``ConnectionPool.check_connection``). ``min_size``/``max_size``:
    the pool's bounds; size ``max_size`` to the thread limiter that calls
    the store. ``timeout``: seconds a call waits for a connection before
    ``StoreUnavailable``.
    """

    dialect = PostgresDialect()

    def __init__(
        self,
        url: str,
        *,
        pre_ping: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = POOL_TIMEOUT_SECONDS,
    ) -> None:
        settings = connection_settings(url)
        params = conninfo_to_dict(settings.conninfo)
        self._description = (
            f"PostgresMetadataStore(host={params.get('host')!r}, port={params.get('port')!r},"
            f" dbname={params.get('dbname')!r})"
        )
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            settings.conninfo,
            kwargs=settings.connect_kwargs(),
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            check=self._check_connection if pre_ping else None,
            name="vault-metadata",
        )
        self._pool.open(wait=False)

    def __repr__(self) -> str:
        return self._description

    # -- lifecycle -------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run any number of times, at once."""
        with _pg_errors("migrate"), self._raw_transaction() as cur:
            first_log_migration = postgres_schema.migrate(cur)
            # The log opens with the hash chain's entries, once.
            open_log(Session(cur, self.dialect), datetime.now(UTC),
                     first_migration=first_log_migration)

    def size_limit(self) -> int:
        """What ``size_bytes``'s type holds: BIGINT once migrated, INTEGER before."""
        with _pg_errors("size_limit"), self._cursor() as cur:
            column = postgres_schema.size_bytes_type(cur)
        return 2**31 - 1 if column == "integer" else 2**63 - 1

    def ping(self) -> None:
        with _pg_errors("ping"), self._cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def close(self) -> None:
        """Close the pool; later calls raise ``StoreUnavailable``."""
        self._pool.close()

    # -- the core's hooks ----------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, operation: str) -> Iterator[Session]:
        with _pg_errors(operation), self._cursor() as cur:
            yield Session(cur, self.dialect, cur.connection.pipeline)

    def _statement(self, operation: str) -> contextlib.AbstractContextManager[Session]:
        return self._reading(operation)  # autocommit: each statement commits by itself

    @contextlib.contextmanager
    def _transaction(self, operation: str) -> Iterator[Session]:
        with _pg_errors(operation), self._raw_transaction() as cur:
            yield Session(cur, self.dialect, cur.connection.pipeline)

    def _lock_cascade(self, db: Session, event_id: str) -> None:
        db.execute(CASCADE_LOCK, lock_class=CASCADE_LOCK_CLASS, key=_cascade_lock_key(event_id))

    def _lock_records(self, db: Session) -> None:
        db.execute(CASCADE_LOCK, lock_class=RECORDS_LOCK_CLASS, key=0)

    def _lock_policy_type(self, db: Session, document_type: DocumentType) -> None:
        # The first version has no row to lock FOR UPDATE: an advisory lock covers it.
        db.execute(CASCADE_LOCK, lock_class=RETENTION_LOCK_CLASS,
                   key=_cascade_lock_key(document_type.value))

    # -- connections -----------------------------------------------------

    def _check_connection(self, conn: psycopg.Connection[Any]) -> None:
        """The pre-ping: ``ConnectionPool.check_connection``, renewing the pool on failure.

        The pool waits (with backoff) before trying its next connection after
        a failed check; with every idle connection dead, meeting them one by
        one could outlast the caller's timeout, so they all go at once.
        """
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._pool.drain()
            raise

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (in autocommit); a broken one renews the whole pool.

        A connection found broken mid-call usually means the server dropped
        them all (restart, failover, terminated backends). The pool discards
        the broken one when it comes back; the idle ones are replaced here
        too, so the next call gets a live connection instead of the next
        dead one.
        """
        lost = False
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                except psycopg.Error:
                    lost = conn.broken
                    raise
        finally:
            if lost:
                with contextlib.suppress(psycopg.Error):
                    self._pool.drain()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[DictRow]]:
        """Statements that each commit by themselves."""
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur

    @contextlib.contextmanager
    def _raw_transaction(self) -> Iterator[psycopg.Cursor[DictRow]]:
        """One transaction, rolled back on any error."""
        with (
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur


if TYPE_CHECKING:
    _conforms: type[MetadataStore] = PostgresMetadataStore


@contextlib.contextmanager
def _pg_errors(operation: str) -> Iterator[None]:
    """Turn every driver and pool error into ``StoreUnavailable``, keeping the cause.

    ``psycopg_pool.PoolTimeout`` and ``PoolClosed`` are ``OperationalError``s.
    """
    try:
        yield
    except (psycopg.Error, psycopg.Warning) as exc:
        raise StoreUnavailable(f"metadata store failed during {operation}: {exc}") from exc


def _cascade_lock_key(event_id: str) -> int:
    """A signed 32-bit key for an event id (a collision only serialises two cascades)."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big", signed=True)


def _aware(moment: datetime) -> datetime:
    """Refuse naive datetimes: PostgreSQL would read them in the session's time zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment
