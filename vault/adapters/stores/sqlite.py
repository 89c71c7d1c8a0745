"""The embedded ``MetadataStore``: one SQLite file, shared by threads and processes.

*Connections*: one per thread, made on first use and kept in a registry so
``close`` can release them all. Every connection runs in WAL mode with
``synchronous=FULL``, a 10 s busy timeout and foreign keys on.

*Transactions*: every write is one ``BEGIN IMMEDIATE`` transaction, so writers
queue on SQLite's write lock instead of failing half-way, and a read made
inside the transaction cannot be overtaken by another writer, in this process
or another one sharing the file. Any error rolls the transaction back.

*Errors*: no ``sqlite3`` exception leaves a public method. Driver errors
become ``StoreUnavailable``; the duplicate guard raises ``DuplicateDocument``.

*Encoding*: UUIDs are lowercase canonical text, timestamps ISO 8601 UTC text
with microseconds (fixed width, so text order is time order), JSON as text.

The row conversions (text or native values to the domain's types) are
``vault.adapters.stores.rows``, shared with the PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

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

BUSY_TIMEOUT_SECONDS: Final = 10.0
SCHEMA_VERSION: Final = 1

# Keeps ``WHERE id IN (...)`` well under SQLite's bound-parameter limit.
_MAX_IDS_PER_STATEMENT: Final = 500

_NOW_TEXT: Final = "(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))"

_SCHEMA: Final[tuple[str, ...]] = (
    f"""
    CREATE TABLE IF NOT EXISTS documents (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
        updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
        entity_type VARCHAR(32) NOT NULL,
        entity_id TEXT NOT NULL,
        token_id INTEGER,
        document_type VARCHAR(32) NOT NULL,
        filename VARCHAR(255) NOT NULL,
        mime_type VARCHAR(255) NOT NULL,
        size_bytes INTEGER NOT NULL,
        storage_bucket VARCHAR(63) NOT NULL,
        storage_key VARCHAR(512) NOT NULL UNIQUE,
        storage_version_id VARCHAR(255),
        sha256_hash VARCHAR(128) NOT NULL,
        hash_verified_at TEXT,
        status VARCHAR(16) NOT NULL,
        on_chain_reference VARCHAR(255),
        uploaded_by TEXT NOT NULL,
        verified_by TEXT,
        archived_by TEXT,
        archived_at TEXT,
        metadata TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_documents_sha256_hash ON documents (sha256_hash)",
    """
    CREATE INDEX IF NOT EXISTS ix_documents_entity_created
        ON documents (entity_id, created_at, id)
    """,
    f"""
    CREATE TABLE IF NOT EXISTS processed_events (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
        updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
        event_id VARCHAR(255) NOT NULL UNIQUE,
        source VARCHAR(128) NOT NULL,
        action VARCHAR(128) NOT NULL,
        entity_id VARCHAR(255),
        entity_type VARCHAR(64)
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_processed_events_event_id ON processed_events (event_id)",
    # The ledger's rows reference documents inserted later in the same
    # transaction, hence the deferred foreign keys.
    """
    CREATE TABLE IF NOT EXISTS ledger_entries (
        seq INTEGER PRIMARY KEY,
        entry_hash TEXT NOT NULL UNIQUE,
        prev_hash TEXT NOT NULL,
        document_id TEXT NOT NULL
            REFERENCES documents (id) DEFERRABLE INITIALLY DEFERRED,
        sha256_hash TEXT NOT NULL,
        registered_at TEXT NOT NULL
    )
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_entries_no_update
    BEFORE UPDATE ON ledger_entries
    BEGIN
        SELECT RAISE(ABORT, 'ledger_entries is append-only');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_entries_no_delete
    BEFORE DELETE ON ledger_entries
    BEGIN
        SELECT RAISE(ABORT, 'ledger_entries is append-only');
    END
    """,
    # At most one live document per (entity, content): the duplicate guard.
    """
    CREATE TABLE IF NOT EXISTS document_hash_claims (
        entity_id TEXT NOT NULL,
        sha256_hash TEXT NOT NULL,
        document_id TEXT NOT NULL
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
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        destination TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT NOT NULL,
        group_id TEXT,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        leased_until TEXT,
        delivered_at TEXT,
        parked_at TEXT,
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
        applied_at TEXT NOT NULL
    )
    """,
)

_DOCUMENT_SELECT: Final = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM documents"
_DOCUMENT_INSERT: Final = (
    f"INSERT INTO documents ({', '.join(DOCUMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in DOCUMENT_COLUMNS)})"
)
_LEDGER_SELECT: Final = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries"
_OUTBOX_SELECT: Final = f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox"
_OUTBOX_INSERT: Final = (
    "INSERT INTO outbox (event_id, destination, body, attributes, group_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class SQLiteMetadataStore:
    """``MetadataStore`` on one SQLite file.

    Safe to call from any number of threads at once, and from several
    processes sharing the file (the write lock serialises their transactions).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._registry_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteMetadataStore({str(self.path)!r})"

    # -- lifecycle -------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run any number of times, at once."""
        with _sqlite_errors("migrate"), self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            newly_applied = conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                (SCHEMA_VERSION, encode_timestamp(datetime.now(UTC))),
            ).rowcount
            if newly_applied:
                # A database created by the service this one replaces holds
                # documents but no claims: give its live documents their guard.
                conn.execute(
                    "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
                    " SELECT entity_id, sha256_hash, id FROM documents"
                    " WHERE status != 'archived'"
                    " ORDER BY created_at, id"
                    " ON CONFLICT (entity_id, sha256_hash) DO NOTHING"
                )

    def ping(self) -> None:
        with _sqlite_errors("ping"):
            self._connection().execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        """Close every connection this store opened, in whichever thread."""
        with self._registry_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- documents -------------------------------------------------------

    def find_active_duplicate(self, entity_id: uuid.UUID, sha256_hash: str) -> uuid.UUID | None:
        with _sqlite_errors("find_active_duplicate"):
            row = (
                self._connection()
                .execute(
                    "SELECT id FROM documents"
                    " WHERE entity_id = ? AND sha256_hash = ? AND status != 'archived'"
                    " ORDER BY created_at, id LIMIT 1",
                    (encode_uuid(entity_id), sha256_hash),
                )
                .fetchone()
            )
        return None if row is None else as_uuid(row["id"])

    def record_upload(self, doc: Document, events: EventsFor, *, unique_hash: bool) -> Document:
        """Register ``doc`` with its ledger entry and events, in one transaction.

        With ``unique_hash`` the claim row is the guard: its primary key
        admits one live document per (entity_id, sha256_hash) whatever the
        interleaving. A live duplicate without a claim (uploaded while the
        guard was off) is refused as well.
        """
        with _sqlite_errors("record_upload"), self._transaction() as conn:
            if unique_hash:
                self._claim_hash(conn, doc)
            head = conn.execute(f"{_LEDGER_SELECT} ORDER BY seq DESC LIMIT 1").fetchone()
            previous = None if head is None else ledger_entry_from_row(head)
            entry = next_entry(previous, doc.id, doc.sha256_hash, doc.created_at)
            stored = attrs.evolve(doc, on_chain_reference=entry.reference)
            conn.execute(
                "INSERT INTO ledger_entries"
                " (seq, entry_hash, prev_hash, document_id, sha256_hash, registered_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    entry.entry_hash,
                    entry.prev_hash,
                    encode_uuid(entry.document_id),
                    entry.sha256_hash,
                    encode_timestamp(entry.registered_at),
                ),
            )
            conn.execute(_DOCUMENT_INSERT, _document_params(stored))
            _insert_events(conn, events(stored))
        return stored

    def get_document(self, document_id: uuid.UUID) -> Document:
        with _sqlite_errors("get_document"):
            return _load_document(self._connection(), document_id)

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
        clauses = ["entity_id = ?"]
        params: list[Any] = [encode_uuid(entity_id)]
        if entity_type is not None:
            clauses.append("entity_type = ?")
            params.append(EntityType(entity_type).value)
        if not include_archived:
            clauses.append("status != 'archived'")
        if after is not None:
            created_at = encode_timestamp(after.created_at)
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [created_at, created_at, encode_uuid(after.document_id)]
        params.append(limit)
        sql = (
            f"{_DOCUMENT_SELECT} WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        with _sqlite_errors("list_documents"):
            rows = self._connection().execute(sql, params).fetchall()
        return [document_from_row(row) for row in rows]

    # -- ledger ----------------------------------------------------------

    def ledger_entry(self, reference: str) -> LedgerEntry | None:
        entry_hash = entry_hash_from_reference(reference)
        if entry_hash is None:
            return None
        with _sqlite_errors("ledger_entry"):
            row = (
                self._connection()
                .execute(f"{_LEDGER_SELECT} WHERE entry_hash = ?", (entry_hash,))
                .fetchone()
            )
        return None if row is None else ledger_entry_from_row(row)

    def ledger_predecessor(self, entry: LedgerEntry) -> LedgerEntry | None:
        if entry.seq <= 1:
            return None
        with _sqlite_errors("ledger_predecessor"):
            row = (
                self._connection()
                .execute(f"{_LEDGER_SELECT} WHERE seq = ?", (entry.seq - 1,))
                .fetchone()
            )
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
        with _sqlite_errors("record_verification"), self._transaction() as conn:
            current = _load_document(conn, document_id)
            updated = attrs.evolve(
                current,
                status=DocumentStatus.ARCHIVED if current.is_archived else status,
                verified_by=verified_by,
                hash_verified_at=verified_at,
                updated_at=verified_at,
            )
            conn.execute(
                "UPDATE documents SET status = ?, verified_by = ?, hash_verified_at = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    updated.status.value,
                    encode_optional_uuid(verified_by),
                    encode_timestamp(verified_at),
                    encode_timestamp(verified_at),
                    encode_uuid(document_id),
                ),
            )
            _insert_events(conn, events(updated))
        return updated

    def archive_document(
        self,
        document_id: uuid.UUID,
        *,
        archived_by: uuid.UUID | None,
        archived_at: datetime,
        events: EventsFor,
    ) -> tuple[Document, bool]:
        with _sqlite_errors("archive_document"), self._transaction() as conn:
            current = _load_document(conn, document_id)
            if current.is_archived:
                return current, False
            updated = archived_copy(current, archived_by, archived_at)
            conn.execute(
                "UPDATE documents SET status = 'archived', archived_by = ?, archived_at = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    encode_optional_uuid(archived_by),
                    encode_timestamp(archived_at),
                    encode_timestamp(archived_at),
                    encode_uuid(document_id),
                ),
            )
            conn.execute(
                "DELETE FROM document_hash_claims WHERE document_id = ?",
                (encode_uuid(document_id),),
            )
            _insert_events(conn, events(updated))
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
        """One batch of the cascade; ``BEGIN IMMEDIATE`` serialises every writer.

        The write lock is held for the whole batch, so ``batch_size`` bounds
        how long uploads and other writers wait behind a cascade.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        entity = encode_uuid(entity_id)
        with _sqlite_errors("archive_entity"), self._transaction() as conn:
            seen = conn.execute(
                "SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)
            ).fetchone()
            if seen is not None:
                return None
            at = encode_timestamp(archived_at)
            batch = [
                archived_copy(document_from_row(row), None, archived_at)
                for row in conn.execute(
                    f"{_DOCUMENT_SELECT} WHERE entity_id = ? AND status != 'archived'"
                    " ORDER BY created_at, id LIMIT ?",
                    (entity, batch_size),
                )
            ]
            ids = [(encode_uuid(doc.id),) for doc in batch]
            conn.executemany(
                "UPDATE documents SET status = 'archived', archived_by = NULL,"
                " archived_at = ?, updated_at = ? WHERE id = ?",
                [(at, at, doc_id) for (doc_id,) in ids],
            )
            # Only the claims of the documents archived here; the entity's
            # other live documents keep their guard until their batch.
            conn.executemany("DELETE FROM document_hash_claims WHERE document_id = ?", ids)
            # One statement for the whole batch's events (one round trip).
            _insert_events(conn, [event for doc in batch for event in events(doc)])
            left = conn.execute(
                "SELECT 1 FROM documents WHERE entity_id = ? AND status != 'archived' LIMIT 1",
                (entity,),
            ).fetchone()
            if left is None:
                conn.execute(
                    "INSERT INTO processed_events"
                    " (id, created_at, updated_at, event_id, source, action, entity_id,"
                    " entity_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (encode_uuid(uuid.uuid4()), at, at, event_id, source, action, entity,
                     entity_type),
                )
        return CascadeBatch(archived=len(batch), finished=left is None)

    # -- outbox ----------------------------------------------------------

    def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        with _sqlite_errors("append_events"), self._transaction() as conn:
            _insert_events(conn, events)

    def claim_outbox(
        self, destinations: Sequence[Destination], limit: int, now: datetime, lease_seconds: float
    ) -> list[OutboxRow]:
        if not destinations or limit < 1:
            return []
        wanted = [Destination(d).value for d in destinations]
        now_text = encode_timestamp(now)
        leased_until = encode_timestamp(now + timedelta(seconds=lease_seconds))
        with _sqlite_errors("claim_outbox"), self._transaction() as conn:
            rows = conn.execute(
                f"{_OUTBOX_SELECT}"
                " WHERE delivered_at IS NULL AND parked_at IS NULL"
                f" AND destination IN ({_placeholders(len(wanted))})"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                " AND (leased_until IS NULL OR leased_until <= ?)"
                " ORDER BY id LIMIT ?",
                (*wanted, now_text, now_text, limit),
            ).fetchall()
            claimed = [outbox_row_from_row(row) for row in rows]
            for chunk in _chunks([row.id for row in claimed]):
                conn.execute(
                    f"UPDATE outbox SET leased_until = ? WHERE id IN ({_placeholders(len(chunk))})",
                    (leased_until, *chunk),
                )
        return claimed

    def mark_delivered(self, row_ids: Sequence[int], at: datetime) -> None:
        if not row_ids:
            return
        delivered_at = encode_timestamp(at)
        with _sqlite_errors("mark_delivered"), self._transaction() as conn:
            for chunk in _chunks(row_ids):
                conn.execute(
                    "UPDATE outbox SET delivered_at = ?, leased_until = NULL"
                    f" WHERE id IN ({_placeholders(len(chunk))})",
                    (delivered_at, *chunk),
                )

    def mark_failed(self, row_id: int, error: str, retry_at: datetime) -> None:
        with _sqlite_errors("mark_failed"), self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, leased_until = NULL WHERE id = ?",
                (error, encode_timestamp(retry_at), row_id),
            )

    def park(self, row_id: int, error: str, at: datetime) -> None:
        """Set a row aside for good; its ``attempts`` count is left as it was."""
        with _sqlite_errors("park"), self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET parked_at = ?, last_error = ?, leased_until = NULL WHERE id = ?",
                (encode_timestamp(at), error, row_id),
            )

    def outbox_stats(self, destination: Destination) -> OutboxStats:
        wanted = Destination(destination).value
        with _sqlite_errors("outbox_stats"):
            conn = self._connection()
            pending = conn.execute(
                "SELECT count(*) AS pending, min(created_at) AS oldest FROM outbox"
                " WHERE destination = ? AND delivered_at IS NULL AND parked_at IS NULL",
                (wanted,),
            ).fetchone()
            parked = conn.execute(
                "SELECT count(*) AS parked FROM outbox"
                " WHERE destination = ? AND parked_at IS NOT NULL",
                (wanted,),
            ).fetchone()
        return OutboxStats(
            pending=int(pending["pending"]),
            parked=int(parked["parked"]),
            oldest_pending_at=as_optional_datetime(pending["oldest"]),
        )

    # -- connections -----------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        # check_same_thread is off only so that ``close`` may close the
        # connections of worker threads that outlive this store (Trio keeps
        # idle threads around). Each connection is still used by the one
        # thread that opened it, and the module is built thread-safe.
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
                self._connections.append(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _discard_connection(self, conn: sqlite3.Connection) -> None:
        """Forget a connection whose state is unknown, so the next call opens a fresh one."""
        with self._registry_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            del self._local.conn
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._discard_connection(conn)
            raise

    def _claim_hash(self, conn: sqlite3.Connection, doc: Document) -> None:
        entity_id = encode_uuid(doc.entity_id)
        claimed = conn.execute(
            "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
            " VALUES (?, ?, ?) ON CONFLICT (entity_id, sha256_hash) DO NOTHING",
            (entity_id, doc.sha256_hash, encode_uuid(doc.id)),
        ).rowcount
        if not claimed:
            holder = conn.execute(
                "SELECT document_id FROM document_hash_claims"
                " WHERE entity_id = ? AND sha256_hash = ?",
                (entity_id, doc.sha256_hash),
            ).fetchone()
            if holder is None:
                raise StoreUnavailable("duplicate guard conflict without a claim holder")
            raise DuplicateDocument(as_uuid(holder["document_id"]))
        unguarded = conn.execute(
            "SELECT id FROM documents"
            " WHERE entity_id = ? AND sha256_hash = ? AND status != 'archived'"
            " ORDER BY created_at, id LIMIT 1",
            (entity_id, doc.sha256_hash),
        ).fetchone()
        if unguarded is not None:
            raise DuplicateDocument(as_uuid(unguarded["id"]))


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


def _load_document(conn: sqlite3.Connection, document_id: uuid.UUID) -> Document:
    row = conn.execute(f"{_DOCUMENT_SELECT} WHERE id = ?", (encode_uuid(document_id),)).fetchone()
    if row is None:
        raise DocumentNotFound(document_id)
    return document_from_row(row)


def _insert_events(conn: sqlite3.Connection, events: Iterable[OutboxEvent]) -> None:
    conn.executemany(_OUTBOX_INSERT, [_event_params(event) for event in events])


def _document_params(doc: Document) -> tuple[Any, ...]:
    values = {
        "id": encode_uuid(doc.id),
        "created_at": encode_timestamp(doc.created_at),
        "updated_at": encode_timestamp(doc.updated_at),
        "entity_type": EntityType(doc.entity_type).value,
        "entity_id": encode_uuid(doc.entity_id),
        "token_id": doc.token_id,
        "document_type": DocumentType(doc.document_type).value,
        "filename": doc.filename,
        "mime_type": doc.mime_type,
        "size_bytes": doc.size_bytes,
        "storage_bucket": doc.storage_bucket,
        "storage_key": doc.storage_key,
        "storage_version_id": doc.storage_version_id,
        "sha256_hash": doc.sha256_hash,
        "hash_verified_at": encode_optional_timestamp(doc.hash_verified_at),
        "status": DocumentStatus(doc.status).value,
        "on_chain_reference": doc.on_chain_reference,
        "uploaded_by": encode_uuid(doc.uploaded_by),
        "verified_by": encode_optional_uuid(doc.verified_by),
        "archived_by": encode_optional_uuid(doc.archived_by),
        "archived_at": encode_optional_timestamp(doc.archived_at),
        "metadata": None if doc.metadata is None else encode_json(doc.metadata),
    }
    return tuple(values[column] for column in DOCUMENT_COLUMNS)


def _event_params(event: OutboxEvent) -> tuple[Any, ...]:
    return (
        encode_uuid(event.event_id),
        Destination(event.destination).value,
        encode_json(event.body),
        encode_json(event.attributes),
        event.group_id,
        encode_timestamp(event.created_at),
    )


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _MAX_IDS_PER_STATEMENT):
        yield ids[start : start + _MAX_IDS_PER_STATEMENT]


# -- encoding: this module's text representation --------------------------


def encode_uuid(value: uuid.UUID) -> str:
    """Lowercase canonical form (what ``str(UUID)`` gives)."""
    return str(value)


def encode_optional_uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else encode_uuid(value)


def encode_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: ``2025-10-23T12:34:56.789000+00:00``.

    Fixed width, so comparing the text compares the instants. Naive
    datetimes are refused: their instant is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def encode_optional_timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else encode_timestamp(moment)


def encode_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
