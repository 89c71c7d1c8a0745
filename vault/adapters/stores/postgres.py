"""The ``MetadataStore`` on PostgreSQL, through psycopg 3's sync API and a pool.

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

*URL*: ``postgresql://``, ``postgres://`` and ``postgresql+psycopg://``
(the SQLAlchemy spelling, whose ``+psycopg`` is dropped) are accepted, with
every libpq parameter they carry. Prepared statements are turned off
(``prepare_threshold=None``) on port 6543, Supabase's transaction pooler,
which cannot keep them across transactions; a ``prepare_threshold`` query
parameter (``none`` or a number) is consumed by the store and overrides it.

*Transactions*: connections run in autocommit; each change is one explicit
transaction (READ COMMITTED) that rolls back on any error, including one
raised by the caller's event builder. Plain reads are single statements.

*Concurrency across processes* (several replicas on one database):

- the duplicate guard is the primary key of ``document_hash_claims``
  (entity_id, sha256_hash): ``INSERT … ON CONFLICT DO NOTHING RETURNING``
  admits one live document per pair; a loser waits for the winner's commit
  and names it in ``DuplicateDocument``;
- ledger appends take a transaction-level advisory lock and read the chain's
  head in a statement that starts after the lock is held, so two uploads
  never extend the same head (``seq`` is also the primary key, a second
  line of defence);
- ``claim_outbox`` locks its rows with ``FOR UPDATE SKIP LOCKED`` and leases
  them in the same statement, so two publishers never get one row;
- ``archive_entity`` batches of one event take a transaction-level advisory
  lock on the event id (two-key form, class ``CASCADE_LOCK_CLASS``) and
  check ``processed_events`` after it is held, so two deliveries never
  archive one document twice and only one writes the row;
- ``migrate`` runs under an advisory lock, so replicas starting together
  apply the schema one after the other.

*Native enum columns*: databases provisioned from earlier versions of the
seed's schema may hold ``entity_type``, ``document_type`` and ``status`` as
the native types ``documententitytype``, ``documenttype`` and
``documentstatus``. ``migrate`` converts such columns to the seed's
``VARCHAR`` definitions (``ALTER COLUMN … TYPE VARCHAR(n) USING col::text``),
as the seed's own note asks, so every query here compares text with text.
The enum types themselves are left in place.

*Errors*: no psycopg exception leaves a public method. A database that is
down or unreachable, a lost connection, a pool that cannot hand out a
connection in time, a closed store and any other driver error all become
``StoreUnavailable``, with the driver's exception as its cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from vault.adapters.stores.rows import (
    DOCUMENT_COLUMNS,
    LEDGER_COLUMNS,
    OUTBOX_COLUMNS,
    archived_copy,
    as_optional_datetime,
    as_uuid,
    document_from_row,
    ledger_entry_from_row,
    outbox_row_from_row,
)
from vault.domain.errors import DocumentNotFound, DuplicateDocument, StoreUnavailable
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.ledger import entry_hash_from_reference, next_entry
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType, LedgerEntry
from vault.ports import CascadeBatch, EventsFor, MetadataStore, OutboxStats, PageCursor

SCHEMA_VERSION: Final = 1

CONNECT_TIMEOUT_SECONDS: Final = 3
"""libpq's ``connect_timeout`` unless the URL sets one."""

POOL_TIMEOUT_SECONDS: Final = 5.0
"""How long a call waits for a connection before ``StoreUnavailable``."""

APPLICATION_NAME: Final = "document-vault"
"""What ``pg_stat_activity`` shows, unless the URL names the application."""

TRANSACTION_POOLER_PORT: Final = "6543"
"""Supabase's transaction pooler: no prepared statements there."""

_SCHEMES: Final = {
    "postgresql": "postgresql",
    "postgres": "postgres",
    "postgresql+psycopg": "postgresql",
}

# Advisory lock keys (bigint, database-wide): the ASCII of a short name.
MIGRATE_LOCK_KEY: Final = int.from_bytes(b"vaultMIG", "big")
LEDGER_LOCK_KEY: Final = int.from_bytes(b"vaultLDG", "big")
# The two-key form (its own key space): this class, and a hash of the event id.
CASCADE_LOCK_CLASS: Final = int.from_bytes(b"vEVT", "big")

# How often a duplicate claim is retried when its holder vanished (archived)
# between the conflict and the look-up.
_CLAIM_ATTEMPTS: Final = 3

# The seed's enum-typed columns as they were, and the seed's definitions now.
_SEED_VARCHAR_COLUMNS: Final[dict[tuple[str, str], int]] = {
    ("documents", "entity_type"): 32,
    ("documents", "document_type"): 32,
    ("documents", "status"): 16,
    ("processed_events", "entity_type"): 64,
}

_SEED_SCHEMA: Final[tuple[str, ...]] = (
    """
    CREATE TABLE IF NOT EXISTS documents (
        id UUID PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        entity_type VARCHAR(32) NOT NULL,
        entity_id UUID NOT NULL,
        token_id INTEGER,
        document_type VARCHAR(32) NOT NULL,
        filename VARCHAR(255) NOT NULL,
        mime_type VARCHAR(255) NOT NULL,
        size_bytes INTEGER NOT NULL,
        storage_bucket VARCHAR(63) NOT NULL,
        storage_key VARCHAR(512) NOT NULL UNIQUE,
        storage_version_id VARCHAR(255),
        sha256_hash VARCHAR(128) NOT NULL,
        hash_verified_at TIMESTAMPTZ,
        status VARCHAR(16) NOT NULL,
        on_chain_reference VARCHAR(255),
        uploaded_by UUID NOT NULL,
        verified_by UUID,
        archived_by UUID,
        archived_at TIMESTAMPTZ,
        metadata JSONB
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_documents_sha256_hash ON documents (sha256_hash)",
    """
    CREATE TABLE IF NOT EXISTS processed_events (
        id UUID PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        event_id VARCHAR(255) NOT NULL UNIQUE,
        source VARCHAR(128) NOT NULL,
        action VARCHAR(128) NOT NULL,
        entity_id VARCHAR(255),
        entity_type VARCHAR(64)
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_processed_events_event_id ON processed_events (event_id)",
)

_SERVICE_SCHEMA: Final[tuple[str, ...]] = (
    """
    CREATE INDEX IF NOT EXISTS ix_documents_entity_created
        ON documents (entity_id, created_at, id)
    """,
    # The ledger's rows reference documents inserted later in the same
    # transaction, hence the deferred foreign keys.
    """
    CREATE TABLE IF NOT EXISTS ledger_entries (
        seq BIGINT PRIMARY KEY,
        entry_hash VARCHAR(64) NOT NULL UNIQUE,
        prev_hash VARCHAR(64) NOT NULL,
        document_id UUID NOT NULL
            REFERENCES documents (id) DEFERRABLE INITIALLY DEFERRED,
        sha256_hash VARCHAR(128) NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE OR REPLACE FUNCTION vault_ledger_entries_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger_entries is append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    """
    DO $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = 'ledger_entries'::regclass AND tgname = 'ledger_entries_no_update'
        ) THEN
            CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
                FOR EACH ROW EXECUTE FUNCTION vault_ledger_entries_append_only();
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = 'ledger_entries'::regclass AND tgname = 'ledger_entries_no_delete'
        ) THEN
            CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
                FOR EACH ROW EXECUTE FUNCTION vault_ledger_entries_append_only();
        END IF;
    END
    $$
    """,
    # At most one live document per (entity, content): the duplicate guard.
    """
    CREATE TABLE IF NOT EXISTS document_hash_claims (
        entity_id UUID NOT NULL,
        sha256_hash VARCHAR(128) NOT NULL,
        document_id UUID NOT NULL
            REFERENCES documents (id) DEFERRABLE INITIALLY DEFERRED,
        PRIMARY KEY (entity_id, sha256_hash)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_document_hash_claims_document_id
        ON document_hash_claims (document_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS outbox (
        id BIGSERIAL PRIMARY KEY,
        event_id UUID NOT NULL UNIQUE,
        destination VARCHAR(32) NOT NULL,
        body JSONB NOT NULL,
        attributes JSONB NOT NULL,
        group_id TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ,
        leased_until TIMESTAMPTZ,
        delivered_at TIMESTAMPTZ,
        parked_at TIMESTAMPTZ,
        last_error TEXT
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (destination, id)
        WHERE delivered_at IS NULL AND parked_at IS NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_outbox_parked ON outbox (destination)
        WHERE parked_at IS NOT NULL
    """,
    """
    CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )
    """,
)

_DOCUMENT_SELECT: Final = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM documents"
_DOCUMENT_RETURNING: Final = f"RETURNING {', '.join(DOCUMENT_COLUMNS)}"
_DOCUMENT_INSERT: Final = (
    f"INSERT INTO documents ({', '.join(DOCUMENT_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in DOCUMENT_COLUMNS)})"
)
_LEDGER_SELECT: Final = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries"
_OUTBOX_INSERT: Final = (
    "INSERT INTO outbox (event_id, destination, body, attributes, group_id, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
_LIVE_TWIN_SELECT: Final = (
    "SELECT id FROM documents"
    " WHERE entity_id = %s AND sha256_hash = %s AND status <> 'archived'"
    " ORDER BY created_at, id LIMIT 1"
)

_NUMBER: Final = re.compile(r"\d+")


@attrs.frozen
class ConnectionSettings:
    """What a database URL means to this store."""

    conninfo: str = attrs.field(repr=False)
    """libpq's ``key=value`` form, with this store's defaults filled in (and the password)."""
    prepare_threshold: int | None
    prepare_threshold_set: bool
    """False when psycopg's own default applies."""

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.Connection.connect`` (and so the pool)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        if self.prepare_threshold_set:
            kwargs["prepare_threshold"] = self.prepare_threshold
        return kwargs


def connection_settings(url: str) -> ConnectionSettings:
    """Parse a ``DATABASE_URL``; ``ValueError`` names what is wrong (never the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        shown = f"scheme {scheme.lower()!r}" if sep else "no scheme"
        raise ValueError(
            f"expected a postgresql://, postgres:// or postgresql+psycopg:// URL, got {shown}"
        )
    rest, threshold_text = _pop_query_parameter(rest, "prepare_threshold")
    libpq_url = f"{_SCHEMES[scheme.lower()]}://{rest}"
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.Error as exc:
        raise ValueError(f"not a valid PostgreSQL URL: {exc}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    params.setdefault("application_name", APPLICATION_NAME)

    threshold: int | None = None
    threshold_set = False
    ports = str(params.get("port") or "").split(",")
    if TRANSACTION_POOLER_PORT in (p.strip() for p in ports):
        threshold_set = True
    if threshold_text is not None:
        threshold = _parse_prepare_threshold(threshold_text)
        threshold_set = True
    return ConnectionSettings(
        conninfo=make_conninfo("", **params),
        prepare_threshold=threshold,
        prepare_threshold_set=threshold_set,
    )


def _pop_query_parameter(rest: str, name: str) -> tuple[str, str | None]:
    """Remove ``name`` from a URL's query, keeping every other byte as it was.

    The last occurrence wins, as in libpq.
    """
    base, sep, query = rest.partition("?")
    if not sep:
        return rest, None
    kept: list[str] = []
    value: str | None = None
    for item in query.split("&"):
        key, _, raw = item.partition("=")
        if unquote(key) == name:
            value = unquote(raw)
        elif item:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), value


def _parse_prepare_threshold(text: str) -> int | None:
    value = text.strip()
    if value.lower() == "none":
        return None
    if _NUMBER.fullmatch(value):
        return int(value)
    raise ValueError(f"prepare_threshold must be 'none' or a whole number, got {text!r}")


class PostgresMetadataStore:
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
        """Create or upgrade the schema; safe to run any number of times, at once.

        Also safe on a database created from the seed's SQL: its tables are
        kept, enum-typed columns become the seed's VARCHARs, and its live
        documents get their duplicate-guard claims.
        """
        with _pg_errors("migrate"), self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            for statement in _SEED_SCHEMA:
                cur.execute(statement)
            _convert_enum_columns(cur)
            for statement in _SERVICE_SCHEMA:
                cur.execute(statement)
            cur.execute(
                "INSERT INTO schema_version (version) VALUES (%s)"
                " ON CONFLICT (version) DO NOTHING RETURNING version",
                (SCHEMA_VERSION,),
            )
            if cur.fetchone() is not None:
                # A database created by the service this one replaces holds
                # documents but no claims: give its live documents their guard,
                # the oldest of each (entity, hash) holding it.
                cur.execute(
                    "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
                    " SELECT DISTINCT ON (entity_id, sha256_hash) entity_id, sha256_hash, id"
                    " FROM documents WHERE status <> 'archived'"
                    " ORDER BY entity_id, sha256_hash, created_at, id"
                    " ON CONFLICT (entity_id, sha256_hash) DO NOTHING"
                )

    def ping(self) -> None:
        with _pg_errors("ping"), self._cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def close(self) -> None:
        """Close the pool; later calls raise ``StoreUnavailable``."""
        self._pool.close()

    # -- documents -------------------------------------------------------

    def find_active_duplicate(self, entity_id: uuid.UUID, sha256_hash: str) -> uuid.UUID | None:
        with _pg_errors("find_active_duplicate"), self._cursor() as cur:
            cur.execute(_LIVE_TWIN_SELECT, (entity_id, sha256_hash))
            row = cur.fetchone()
        return None if row is None else as_uuid(row["id"])

    def record_upload(self, doc: Document, events: EventsFor, *, unique_hash: bool) -> Document:
        """Register ``doc`` with its ledger entry and events, in one transaction.

        With ``unique_hash`` the claim row is the guard: its primary key
        admits one live document per (entity_id, sha256_hash) whatever the
        interleaving, across processes. A live duplicate without a claim
        (uploaded while the guard was off) is refused as well.
        """
        with _pg_errors("record_upload"), self._transaction() as cur:
            if unique_hash:
                _claim_hash(cur, doc)
            conn = cur.connection
            # The head must be read by a statement that starts after the lock
            # is granted: in READ COMMITTED each statement takes its snapshot
            # when it starts, so reading in the locking statement could miss
            # the entry the previous holder just committed. Pipelined, the two
            # statements still run one after the other, in one round trip.
            with conn.pipeline(), conn.cursor(row_factory=dict_row) as head_cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                head_cur.execute(f"{_LEDGER_SELECT} ORDER BY seq DESC LIMIT 1")
                head = head_cur.fetchone()
            previous = None if head is None else ledger_entry_from_row(head)
            entry = next_entry(previous, doc.id, doc.sha256_hash, doc.created_at)
            stored = attrs.evolve(doc, on_chain_reference=entry.reference)
            outbox = [_event_params(event) for event in events(stored)]
            # The lock is held until commit: its writes go in one round trip.
            with conn.pipeline():
                cur.execute(
                    "INSERT INTO ledger_entries"
                    " (seq, entry_hash, prev_hash, document_id, sha256_hash, registered_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        entry.seq,
                        entry.entry_hash,
                        entry.prev_hash,
                        entry.document_id,
                        entry.sha256_hash,
                        _aware(entry.registered_at),
                    ),
                )
                cur.execute(_DOCUMENT_INSERT, _document_params(stored))
                if outbox:
                    cur.executemany(_OUTBOX_INSERT, outbox)
        return stored

    def get_document(self, document_id: uuid.UUID) -> Document:
        with _pg_errors("get_document"), self._cursor() as cur:
            return _load_document(cur, document_id)

    def list_documents(
        self,
        entity_id: uuid.UUID,
        *,
        entity_type: EntityType | None,
        include_archived: bool,
        limit: int,
        after: PageCursor | None,
    ) -> list[Document]:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        clauses = ["entity_id = %s"]
        params: list[Any] = [entity_id]
        if entity_type is not None:
            clauses.append("entity_type = %s")
            params.append(EntityType(entity_type).value)
        if not include_archived:
            clauses.append("status <> 'archived'")
        if after is not None:
            clauses.append("(created_at, id) < (%s, %s)")
            params += [_aware(after.created_at), after.document_id]
        params.append(limit)
        sql = (
            f"{_DOCUMENT_SELECT} WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        with _pg_errors("list_documents"), self._cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        return [document_from_row(row) for row in rows]

    # -- ledger ----------------------------------------------------------

    def ledger_entry(self, reference: str) -> LedgerEntry | None:
        entry_hash = entry_hash_from_reference(reference)
        if entry_hash is None:
            return None
        with _pg_errors("ledger_entry"), self._cursor() as cur:
            cur.execute(f"{_LEDGER_SELECT} WHERE entry_hash = %s", (entry_hash,))
            row = cur.fetchone()
        return None if row is None else ledger_entry_from_row(row)

    def ledger_predecessor(self, entry: LedgerEntry) -> LedgerEntry | None:
        if entry.seq <= 1:
            return None
        with _pg_errors("ledger_predecessor"), self._cursor() as cur:
            cur.execute(f"{_LEDGER_SELECT} WHERE seq = %s", (entry.seq - 1,))
            row = cur.fetchone()
        return None if row is None else ledger_entry_from_row(row)

    # -- state changes ---------------------------------------------------

    def record_verification(
        self,
        document_id: uuid.UUID,
        *,
        status: DocumentStatus,
        verified_by: uuid.UUID | None,
        verified_at: datetime,
        events: EventsFor,
    ) -> Document:
        status = DocumentStatus(status)
        if status not in (DocumentStatus.VERIFIED, DocumentStatus.MISMATCH):
            raise ValueError(f"a verification ends verified or mismatch, not {status}")
        with _pg_errors("record_verification"), self._transaction() as cur:
            current = _load_document(cur, document_id, for_update=True)
            updated = attrs.evolve(
                current,
                status=DocumentStatus.ARCHIVED if current.is_archived else status,
                verified_by=verified_by,
                hash_verified_at=verified_at,
                updated_at=verified_at,
            )
            cur.execute(
                "UPDATE documents SET status = %s, verified_by = %s, hash_verified_at = %s,"
                " updated_at = %s WHERE id = %s",
                (
                    updated.status.value,
                    verified_by,
                    _aware(verified_at),
                    _aware(verified_at),
                    document_id,
                ),
            )
            _insert_events(cur, events(updated))
        return updated

    def archive_document(
        self,
        document_id: uuid.UUID,
        *,
        archived_by: uuid.UUID | None,
        archived_at: datetime,
        events: EventsFor,
    ) -> tuple[Document, bool]:
        with _pg_errors("archive_document"), self._transaction() as cur:
            current = _load_document(cur, document_id, for_update=True)
            if current.is_archived:
                return current, False
            updated = archived_copy(current, archived_by, archived_at)
            cur.execute(
                "UPDATE documents SET status = 'archived', archived_by = %s, archived_at = %s,"
                " updated_at = %s WHERE id = %s",
                (archived_by, _aware(archived_at), _aware(archived_at), document_id),
            )
            cur.execute("DELETE FROM document_hash_claims WHERE document_id = %s", (document_id,))
            _insert_events(cur, events(updated))
        return updated, True

    def archive_entity(
        self,
        *,
        event_id: str,
        source: str,
        action: str,
        entity_id: uuid.UUID,
        entity_type: str,
        archived_at: datetime,
        events: EventsFor,
        batch_size: int,
    ) -> CascadeBatch | None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        at = _aware(archived_at)
        with _pg_errors("archive_entity"), self._transaction() as cur:
            # Batches of one event run one at a time, in any process: a
            # concurrent delivery waits here, then its next statement (a new
            # snapshot) sees what the holder committed.
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                (CASCADE_LOCK_CLASS, _cascade_lock_key(event_id)),
            )
            cur.execute("SELECT 1 FROM processed_events WHERE event_id = %s", (event_id,))
            if cur.fetchone() is not None:
                return None
            # Rows a manual archive changed meanwhile drop out of the locked
            # subquery, so a batch may come back short: whether the cascade
            # is finished is asked afterwards, not inferred from its size.
            cur.execute(
                "UPDATE documents SET status = 'archived', archived_by = NULL,"
                " archived_at = %s, updated_at = %s"
                " WHERE id IN (SELECT id FROM documents"
                "   WHERE entity_id = %s AND status <> 'archived'"
                "   ORDER BY created_at, id LIMIT %s FOR UPDATE)"
                f" AND status <> 'archived' {_DOCUMENT_RETURNING}",
                (at, at, entity_id, batch_size),
            )
            archived = sorted(
                (document_from_row(row) for row in cur.fetchall()),
                key=lambda d: (d.created_at, d.id),
            )
            cur.execute(
                "DELETE FROM document_hash_claims WHERE document_id = ANY(%s::uuid[])",
                ([doc.id for doc in archived],),
            )
            # One statement for the whole batch's events (one round trip).
            _insert_events(cur, [event for doc in archived for event in events(doc)])
            cur.execute(
                "SELECT 1 FROM documents WHERE entity_id = %s AND status <> 'archived' LIMIT 1",
                (entity_id,),
            )
            finished = cur.fetchone() is None
            if finished:
                cur.execute(
                    "INSERT INTO processed_events"
                    " (id, created_at, updated_at, event_id, source, action, entity_id,"
                    " entity_type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (uuid.uuid4(), at, at, event_id, source, action, str(entity_id),
                     entity_type),
                )
        return CascadeBatch(archived=len(archived), finished=finished)

    # -- outbox ----------------------------------------------------------

    def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        with _pg_errors("append_events"), self._transaction() as cur:
            _insert_events(cur, events)

    def claim_outbox(
        self, destinations: Sequence[Destination], limit: int, now: datetime, lease_seconds: float
    ) -> list[OutboxRow]:
        if not destinations or limit < 1:
            return []
        wanted = [Destination(d).value for d in destinations]
        now = _aware(now)
        leased_until = now + timedelta(seconds=lease_seconds)
        with _pg_errors("claim_outbox"), self._cursor() as cur:
            # One statement: the rows it locks (skipping those another claim
            # holds) are leased before the lock is released.
            cur.execute(
                "WITH due AS ("
                " SELECT id FROM outbox"
                " WHERE delivered_at IS NULL AND parked_at IS NULL"
                " AND destination = ANY(%s::text[])"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
                " AND (leased_until IS NULL OR leased_until <= %s)"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE outbox SET leased_until = %s FROM due WHERE outbox.id = due.id"
                f" RETURNING {', '.join(f'outbox.{c}' for c in OUTBOX_COLUMNS)}",
                (wanted, now, now, limit, leased_until),
            )
            rows = cur.fetchall()
        return sorted((outbox_row_from_row(row) for row in rows), key=lambda r: r.id)

    def mark_delivered(self, row_ids: Sequence[int], at: datetime) -> None:
        if not row_ids:
            return
        with _pg_errors("mark_delivered"), self._cursor() as cur:
            cur.execute(
                "UPDATE outbox SET delivered_at = %s, leased_until = NULL"
                " WHERE id = ANY(%s::bigint[])",
                (_aware(at), list(row_ids)),
            )

    def mark_failed(self, row_id: int, error: str, retry_at: datetime) -> None:
        with _pg_errors("mark_failed"), self._cursor() as cur:
            cur.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = %s,"
                " next_attempt_at = %s, leased_until = NULL WHERE id = %s",
                (error, _aware(retry_at), row_id),
            )

    def park(self, row_id: int, error: str, at: datetime) -> None:
        """Set a row aside for good; its ``attempts`` count is left as it was."""
        with _pg_errors("park"), self._cursor() as cur:
            cur.execute(
                "UPDATE outbox SET parked_at = %s, last_error = %s, leased_until = NULL"
                " WHERE id = %s",
                (_aware(at), error, row_id),
            )

    def outbox_stats(self, destination: Destination) -> OutboxStats:
        wanted = Destination(destination).value
        with _pg_errors("outbox_stats"), self._cursor() as cur:
            cur.execute(
                "SELECT pending.n AS pending, pending.oldest AS oldest, parked.n AS parked"
                " FROM (SELECT count(*) AS n, min(created_at) AS oldest FROM outbox"
                "       WHERE destination = %s"
                "       AND delivered_at IS NULL AND parked_at IS NULL) AS pending,"
                "      (SELECT count(*) AS n FROM outbox"
                "       WHERE destination = %s AND parked_at IS NOT NULL) AS parked",
                (wanted, wanted),
            )
            row = cur.fetchone()
        if row is None:
            raise StoreUnavailable("outbox_stats returned no row")
        return OutboxStats(
            pending=int(row["pending"]),
            parked=int(row["parked"]),
            oldest_pending_at=as_optional_datetime(row["oldest"]),
        )

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
    def _transaction(self) -> Iterator[psycopg.Cursor[DictRow]]:
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


def _convert_enum_columns(cur: psycopg.Cursor[DictRow]) -> None:
    """Give the seed's columns that an earlier schema typed as enums their VARCHARs."""
    cur.execute(
        "SELECT c.relname AS table_name, a.attname AS column_name"
        " FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid IN ('documents'::regclass, 'processed_events'::regclass)"
        " AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'e'"
    )
    enum_columns: dict[str, list[str]] = {}
    for row in cur.fetchall():
        key = (str(row["table_name"]), str(row["column_name"]))
        if key in _SEED_VARCHAR_COLUMNS:
            enum_columns.setdefault(key[0], []).append(key[1])
    for table, columns in sorted(enum_columns.items()):
        changes = ", ".join(
            f"ALTER COLUMN {column} TYPE VARCHAR({_SEED_VARCHAR_COLUMNS[(table, column)]})"
            f" USING {column}::text"
            for column in sorted(columns)
        )
        cur.execute(f"ALTER TABLE {table} {changes}")


def _claim_hash(cur: psycopg.Cursor[DictRow], doc: Document) -> None:
    for _ in range(_CLAIM_ATTEMPTS):
        # Against an uncommitted claim of the same pair this waits for that
        # transaction, then either inserts (it rolled back) or does nothing.
        cur.execute(
            "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
            " VALUES (%s, %s, %s) ON CONFLICT (entity_id, sha256_hash) DO NOTHING"
            " RETURNING document_id",
            (doc.entity_id, doc.sha256_hash, doc.id),
        )
        if cur.fetchone() is not None:
            break
        cur.execute(
            "SELECT document_id FROM document_hash_claims"
            " WHERE entity_id = %s AND sha256_hash = %s",
            (doc.entity_id, doc.sha256_hash),
        )
        holder = cur.fetchone()
        if holder is not None:
            raise DuplicateDocument(as_uuid(holder["document_id"]))
        # The holder was archived in between: the pair is free again.
    else:
        raise StoreUnavailable("duplicate guard kept conflicting without a claim holder")
    cur.execute(_LIVE_TWIN_SELECT, (doc.entity_id, doc.sha256_hash))
    unguarded = cur.fetchone()
    if unguarded is not None:
        raise DuplicateDocument(as_uuid(unguarded["id"]))


def _load_document(
    cur: psycopg.Cursor[DictRow], document_id: uuid.UUID, *, for_update: bool = False
) -> Document:
    lock = " FOR UPDATE" if for_update else ""
    cur.execute(f"{_DOCUMENT_SELECT} WHERE id = %s{lock}", (document_id,))
    row = cur.fetchone()
    if row is None:
        raise DocumentNotFound(document_id)
    return document_from_row(row)


def _insert_events(cur: psycopg.Cursor[DictRow], events: Iterable[OutboxEvent]) -> None:
    params = [_event_params(event) for event in events]
    if params:
        cur.executemany(_OUTBOX_INSERT, params)


def _cascade_lock_key(event_id: str) -> int:
    """A signed 32-bit key for an event id (a collision only serialises two cascades)."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big", signed=True)


def _aware(moment: datetime) -> datetime:
    """Refuse naive datetimes: PostgreSQL would read them in the session's time zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment


def _optional_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


def _document_params(doc: Document) -> tuple[Any, ...]:
    values = {
        "id": doc.id,
        "created_at": _aware(doc.created_at),
        "updated_at": _aware(doc.updated_at),
        "entity_type": EntityType(doc.entity_type).value,
        "entity_id": doc.entity_id,
        "token_id": doc.token_id,
        "document_type": DocumentType(doc.document_type).value,
        "filename": doc.filename,
        "mime_type": doc.mime_type,
        "size_bytes": doc.size_bytes,
        "storage_bucket": doc.storage_bucket,
        "storage_key": doc.storage_key,
        "storage_version_id": doc.storage_version_id,
        "sha256_hash": doc.sha256_hash,
        "hash_verified_at": _optional_aware(doc.hash_verified_at),
        "status": DocumentStatus(doc.status).value,
        "on_chain_reference": doc.on_chain_reference,
        "uploaded_by": doc.uploaded_by,
        "verified_by": doc.verified_by,
        "archived_by": doc.archived_by,
        "archived_at": _optional_aware(doc.archived_at),
        "metadata": None if doc.metadata is None else Jsonb(doc.metadata),
    }
    return tuple(values[column] for column in DOCUMENT_COLUMNS)


def _event_params(event: OutboxEvent) -> tuple[Any, ...]:
    return (
        event.event_id,
        Destination(event.destination).value,
        Jsonb(event.body),
        Jsonb(event.attributes),
        event.group_id,
        _aware(event.created_at),
    )
