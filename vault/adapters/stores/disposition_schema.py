"""Schema 6: dispositions and their certificates, on both databases.

``dispositions`` is one row a disposition, moving proposed → approved →
executing → executed; ``disposition_items`` its documents, with what the
certificate keeps of each (hash, size, where it was stored, the policy
version and ``retain_until`` that kept it, every stored version recorded
before any was deleted, and the hash of its ``disposed`` leaf).

The triggers: neither table loses a row; an executed disposition and its
items never change again; a disposed document (a tombstone) never becomes
anything else. ``ledger_leaves_by_hash`` lets a certificate find where
each ``disposed`` leaf sits in the log.
"""

from __future__ import annotations

from typing import Final

from vault.adapters.stores.retention_schema import pg_trigger

_TABLES = """
    CREATE TABLE IF NOT EXISTS dispositions (
        disposition_id {uuid} PRIMARY KEY,
        status TEXT NOT NULL
            CHECK (status IN ('proposed', 'approved', 'executing', 'executed')),
        reason TEXT NOT NULL,
        proposed_at {timestamp} NOT NULL,
        proposed_by {uuid},
        proposed_role TEXT NOT NULL,
        approved_at {timestamp},
        approved_by {uuid},
        approved_role TEXT,
        holds_checked_at {timestamp},
        executed_at {timestamp},
        executed_by {uuid},
        executed_role TEXT
    );
    CREATE INDEX IF NOT EXISTS dispositions_newest ON dispositions (proposed_at, disposition_id);
    CREATE TABLE IF NOT EXISTS disposition_items (
        disposition_id {uuid} NOT NULL REFERENCES dispositions (disposition_id),
        document_id {uuid} NOT NULL,
        position INTEGER NOT NULL,
        entity_id {uuid} NOT NULL,
        entity_type TEXT NOT NULL,
        document_type TEXT NOT NULL,
        filename TEXT NOT NULL,
        sha256_hash TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        storage_bucket TEXT NOT NULL,
        storage_key TEXT NOT NULL,
        policy_version INTEGER,
        retention_mode TEXT,
        retain_until {timestamp},
        storage_versions TEXT,
        leaf_hash TEXT,
        PRIMARY KEY (disposition_id, document_id)
    );
    CREATE INDEX IF NOT EXISTS disposition_items_document
        ON disposition_items (document_id, disposition_id);
    CREATE INDEX IF NOT EXISTS ledger_leaves_by_hash ON ledger_leaves (leaf_hash)
"""


def _tables(**types: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _TABLES.format(**types).split(";"))


_SQLITE_TRIGGERS = (
    *(
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
        BEGIN
            SELECT RAISE(ABORT, '{table} are never deleted');
        END
        """
        for table in ("dispositions", "disposition_items")
    ),
    """
    CREATE TRIGGER IF NOT EXISTS dispositions_executed_final BEFORE UPDATE ON dispositions
    WHEN OLD.status = 'executed'
    BEGIN
        SELECT RAISE(ABORT, 'an executed disposition never changes');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS disposition_items_executed_final
    BEFORE UPDATE ON disposition_items
    WHEN (SELECT status FROM dispositions WHERE disposition_id = OLD.disposition_id)
         = 'executed'
    BEGIN
        SELECT RAISE(ABORT, 'an executed disposition never changes');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS documents_disposed_final BEFORE UPDATE OF status ON documents
    WHEN OLD.status = 'disposed' AND NEW.status <> 'disposed'
    BEGIN
        SELECT RAISE(ABORT, 'a disposed document stays disposed');
    END
    """,
)

_PG_FUNCTIONS = (
    """
    CREATE OR REPLACE FUNCTION vault_dispositions_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'dispositions are never deleted'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF OLD.status = 'executed' THEN
            RAISE EXCEPTION 'an executed disposition never changes'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_disposition_items_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'disposition_items are never deleted'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF (SELECT status FROM dispositions WHERE disposition_id = OLD.disposition_id)
           = 'executed' THEN
            RAISE EXCEPTION 'an executed disposition never changes'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_documents_disposed_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status = 'disposed' AND NEW.status <> 'disposed' THEN
            RAISE EXCEPTION 'a disposed document stays disposed'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
)


_PG_TRIGGERS = (
    *(
        pg_trigger(table, f"{table}_guard", "BEFORE UPDATE OR DELETE", f"vault_{table}_guard")
        for table in ("dispositions", "disposition_items")
    ),
    *(
        pg_trigger(table, f"{table}_no_truncate", "BEFORE TRUNCATE", "vault_never_deleted")
        for table in ("dispositions", "disposition_items")
    ),
    pg_trigger("documents", "documents_disposed_final", "BEFORE UPDATE OF status",
                "vault_documents_disposed_guard"),
)

SQLITE: Final[tuple[str, ...]] = (
    *_tables(uuid="TEXT", timestamp="TEXT"),
    *_SQLITE_TRIGGERS,
)
POSTGRES: Final[tuple[str, ...]] = (
    *_tables(uuid="UUID", timestamp="TIMESTAMPTZ"),
    *_PG_FUNCTIONS,
    *_PG_TRIGGERS,
)
