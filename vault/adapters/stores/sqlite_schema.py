"""The embedded store's schema: the tables, indexes and triggers ``migrate`` creates.

Column for column the same tables as ``postgres_schema.py``, in SQLite's
types: UUIDs and timestamps as text (see ``sqlite.py``'s encoding), JSON as
text. The ledger's triggers refuse UPDATE and DELETE (SQLite has no
TRUNCATE: an unqualified DELETE runs the row triggers when there are any).

The verifiable log (``ledger_leaves``, ``ledger_tiles``, ``ledger_tree``,
``ledger_checkpoints``): a leaf may change once, from pending to its index,
and never otherwise; a tile may only grow (the new hashes start with the
old ones) until it is full, then never changes; checkpoints never change.
``ledger_entries`` is the hash chain of the release before the log: kept,
append-only, and read by ``migrate`` once to open the log.
"""

from __future__ import annotations

from typing import Final

from vault.adapters.stores import (
    disposition_schema,
    integrity_schema,
    outside_schema,
    retention_schema,
)
from vault.domain.log import FULL_TILE_BYTES

SCHEMA_VERSION: Final = 6

NOW_TEXT: Final = "(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))"

SCHEMA: Final[tuple[str, ...]] = (
    f"""
    CREATE TABLE IF NOT EXISTS documents (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT {NOW_TEXT},
        updated_at TEXT NOT NULL DEFAULT {NOW_TEXT},
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
    # The duplicate check looks (entity, content) up: without statistics
    # SQLite's planner would rather walk the entity's documents by date.
    """
    CREATE INDEX IF NOT EXISTS ix_documents_entity_hash
        ON documents (entity_id, sha256_hash)
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_documents_entity_created
        ON documents (entity_id, created_at, id)
    """,
    f"""
    CREATE TABLE IF NOT EXISTS processed_events (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT {NOW_TEXT},
        updated_at TEXT NOT NULL DEFAULT {NOW_TEXT},
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
    # Inserting a document checks the ledger's deferred foreign key to it:
    # without this index each upload scanned the whole ledger (0.7 ms at 5,000
    # entries, 4.1 ms at 30,000, inside the write lock); with it, 0.5 ms.
    """
    CREATE INDEX IF NOT EXISTS ix_ledger_entries_document_id
        ON ledger_entries (document_id)
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
    # A group's rows go out in order: the claim looks for an earlier
    # undelivered row of the same group, by this index.
    """
    CREATE INDEX IF NOT EXISTS ix_outbox_group_pending ON outbox (destination, group_id, id)
        WHERE delivered_at IS NULL AND parked_at IS NULL
    """,
    # Pruning finds the oldest deliveries by this one.
    """
    CREATE INDEX IF NOT EXISTS ix_outbox_delivered ON outbox (delivered_at)
        WHERE delivered_at IS NOT NULL
    """,
    # The verifiable log. Pending leaves (no index yet) are found by the
    # partial index, in the order they were written.
    """
    CREATE TABLE IF NOT EXISTS ledger_leaves (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id TEXT NOT NULL,
        kind VARCHAR(16) NOT NULL,
        leaf BLOB NOT NULL,
        leaf_hash VARCHAR(64) NOT NULL,
        created_at TEXT NOT NULL,
        leaf_index INTEGER UNIQUE
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_ledger_leaves_pending ON ledger_leaves (seq)
        WHERE leaf_index IS NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS ix_ledger_leaves_document ON ledger_leaves (document_id, kind)
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_leaves_no_update
    BEFORE UPDATE ON ledger_leaves
    WHEN NOT (OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
              AND NEW.seq = OLD.seq AND NEW.document_id = OLD.document_id
              AND NEW.kind = OLD.kind AND NEW.leaf = OLD.leaf
              AND NEW.leaf_hash = OLD.leaf_hash AND NEW.created_at = OLD.created_at)
    BEGIN
        SELECT RAISE(ABORT, 'ledger_leaves is append-only');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_leaves_no_delete
    BEFORE DELETE ON ledger_leaves
    BEGIN
        SELECT RAISE(ABORT, 'ledger_leaves is append-only');
    END
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger_tiles (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hashes BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    )
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS ledger_tiles_only_grow
    BEFORE UPDATE ON ledger_tiles
    WHEN length(OLD.hashes) >= {FULL_TILE_BYTES}
         OR NEW.level <> OLD.level OR NEW.idx <> OLD.idx
         OR length(NEW.hashes) <= length(OLD.hashes)
         OR substr(NEW.hashes, 1, length(OLD.hashes)) <> OLD.hashes
    BEGIN
        SELECT RAISE(ABORT, 'ledger_tiles only grow');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_tiles_no_delete
    BEFORE DELETE ON ledger_tiles
    BEGIN
        SELECT RAISE(ABORT, 'ledger_tiles only grow');
    END
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger_tree (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        log_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        edge BLOB NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        signed_at TEXT NOT NULL
    )
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_checkpoints_no_update
    BEFORE UPDATE ON ledger_checkpoints
    BEGIN
        SELECT RAISE(ABORT, 'ledger_checkpoints is append-only');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_checkpoints_no_delete
    BEFORE DELETE ON ledger_checkpoints
    BEGIN
        SELECT RAISE(ABORT, 'ledger_checkpoints is append-only');
    END
    """,
    """
    CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER PRIMARY KEY,
        applied_at TEXT NOT NULL
    )
    """,
    *outside_schema.SQLITE,
    *integrity_schema.SQLITE,
    *retention_schema.SQLITE,
    *disposition_schema.SQLITE,
)
