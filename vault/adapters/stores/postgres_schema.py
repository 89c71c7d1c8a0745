"""The PostgreSQL store's schema and its migrations.

The seed's ``documents`` and ``processed_events`` tables are kept column
for column; the ledger, the duplicate guard, the outbox and the schema
version are this service's own. ``migrate`` runs under an advisory lock,
so replicas starting together apply the schema one after the other.

*Document sizes*: the seed declares ``size_bytes INTEGER``, which caps a
document at 2 GiB - 1; this service creates it as BIGINT and ``migrate``
widens a seed-era column in place. ``size_bytes_type`` tells what the
column can hold, so start-up can refuse a size limit it cannot store.

*Native enum columns*: databases provisioned from earlier versions of the
seed's schema may hold ``entity_type``, ``document_type`` and ``status`` as
the native types ``documententitytype``, ``documenttype`` and
``documentstatus``. ``migrate`` converts such columns to the seed's
``VARCHAR`` definitions (``ALTER COLUMN … TYPE VARCHAR(n) USING col::text``),
as the seed's own note asks, so every query compares text with text. The
enum types themselves are left in place.

*The verifiable log* (``ledger_leaves``, ``ledger_tiles``, ``ledger_tree``,
``ledger_checkpoints``): triggers let a leaf change once, from pending to
its index, a tile only grow until it is full, and nothing else; DELETE and
TRUNCATE are refused on all three. ``ledger_entries``, the hash chain of the
release before the log, is kept append-only and read once by ``migrate``
(schema version 2) to open the log.
"""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg.rows import DictRow

from vault.adapters.stores import (
    disposition_schema,
    integrity_schema,
    outside_schema,
    retention_schema,
)
from vault.domain.log import FULL_TILE_BYTES

SCHEMA_VERSION: Final = 6

MIGRATE_LOCK_KEY: Final = int.from_bytes(b"vaultMIG", "big")
"""Advisory lock key (bigint, database-wide): the ASCII of a short name."""

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
        size_bytes BIGINT NOT NULL,
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
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = 'ledger_entries'::regclass AND tgname = 'ledger_entries_no_truncate'
        ) THEN
            CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
                FOR EACH STATEMENT EXECUTE FUNCTION vault_ledger_entries_append_only();
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
    # Looking a document's ledger entries up (and the foreign key's checks).
    """
    CREATE INDEX IF NOT EXISTS ix_ledger_entries_document_id
        ON ledger_entries (document_id)
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
        seq BIGSERIAL PRIMARY KEY,
        document_id UUID NOT NULL,
        kind VARCHAR(16) NOT NULL,
        leaf BYTEA NOT NULL,
        leaf_hash VARCHAR(64) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        leaf_index BIGINT UNIQUE
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
    CREATE TABLE IF NOT EXISTS ledger_tiles (
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hashes BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger_tree (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        log_id TEXT NOT NULL,
        size BIGINT NOT NULL,
        edge BYTEA NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        size BIGINT PRIMARY KEY,
        root_hash BYTEA NOT NULL,
        note TEXT NOT NULL,
        signed_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE OR REPLACE FUNCTION vault_ledger_leaves_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
           AND NEW.seq = OLD.seq AND NEW.document_id = OLD.document_id
           AND NEW.kind = OLD.kind AND NEW.leaf = OLD.leaf
           AND NEW.leaf_hash = OLD.leaf_hash AND NEW.created_at = OLD.created_at THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'ledger_leaves is append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION vault_ledger_tiles_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND length(OLD.hashes) < {FULL_TILE_BYTES}
           AND NEW.level = OLD.level AND NEW.idx = OLD.idx
           AND length(NEW.hashes) > length(OLD.hashes)
           AND substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) = OLD.hashes THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'ledger_tiles only grow'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_ledger_checkpoints_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger_checkpoints is append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    *(
        outside_schema.PG_GUARD_TRIGGERS.format(table=table)
        for table in ("ledger_leaves", "ledger_tiles", "ledger_checkpoints")
    ),
    """
    CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )
    """,
)


def migrate(cur: psycopg.Cursor[DictRow]) -> bool:
    """Create or upgrade the schema, inside the caller's transaction.

    Also safe on a database created from the seed's SQL: its tables are
    kept, enum-typed columns become the seed's VARCHARs, the seed's INTEGER
    ``size_bytes`` becomes BIGINT, and its live documents get their
    duplicate-guard claims. True when this run applied schema 2 (the log),
    so the caller opens the log with the hash chain's entries.
    """
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
    for statement in _SEED_SCHEMA:
        cur.execute(statement)
    _convert_enum_columns(cur)
    _widen_size_bytes(cur)
    for statement in (*_SERVICE_SCHEMA, *outside_schema.POSTGRES, *integrity_schema.POSTGRES,
                      *retention_schema.POSTGRES, *disposition_schema.POSTGRES):
        cur.execute(statement)
    applied: dict[int, bool] = {}
    for version in range(1, SCHEMA_VERSION + 1):
        cur.execute(
            "INSERT INTO schema_version (version) VALUES (%s)"
            " ON CONFLICT (version) DO NOTHING RETURNING version",
            (version,),
        )
        applied[version] = cur.fetchone() is not None
    if applied[1]:
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
    return applied[2]


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


def size_bytes_type(cur: psycopg.Cursor[DictRow]) -> str:
    """``documents.size_bytes``'s type as the catalogue names it (``integer``, ``bigint``)."""
    cur.execute(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'documents'"
        " AND column_name = 'size_bytes'"
    )
    row = cur.fetchone()
    return "" if row is None else str(row["data_type"])


def _widen_size_bytes(cur: psycopg.Cursor[DictRow]) -> None:
    """The seed's ``size_bytes INTEGER`` caps documents at 2 GiB: make it BIGINT, in place."""
    if size_bytes_type(cur) == "integer":
        cur.execute("ALTER TABLE documents ALTER COLUMN size_bytes TYPE BIGINT")

