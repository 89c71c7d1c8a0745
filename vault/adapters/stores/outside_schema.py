"""Schema 3: what the log's checkpoints became outside, on both databases.

``ledger_cosignatures`` (one witness's cosignature line on one checkpoint
size) and ``ledger_published`` (the checkpoints that met the witness
quorum, as served) only ever gain rows. ``ledger_anchors`` holds one row a
kind and checkpoint size: a job while it is pending or sent, a proof once
done; a done row never changes, and no row is ever deleted.

On SQLite an ``INSERT OR REPLACE`` would delete a row without its DELETE
trigger; an insert that meets an existing key is dropped instead, here
and (from this schema on) for ``ledger_checkpoints`` and ``ledger_leaves``.
"""

from __future__ import annotations

from typing import Final

_TABLES = """
    CREATE TABLE IF NOT EXISTS ledger_cosignatures (
        witness TEXT NOT NULL,
        size {bigint} NOT NULL,
        line TEXT NOT NULL,
        cosigned_at {timestamp} NOT NULL,
        PRIMARY KEY (witness, size)
    );
    CREATE TABLE IF NOT EXISTS ledger_published (
        size {bigint} PRIMARY KEY,
        note TEXT NOT NULL,
        published_at {timestamp} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_anchors (
        kind TEXT NOT NULL CHECK (kind IN ('rfc3161', 'evm')),
        size {bigint} NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done')),
        created_at {timestamp} NOT NULL,
        leased_until {timestamp},
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        tx_hash TEXT,
        nonce {bigint},
        raw_tx TEXT,
        token {blob},
        chain_id {bigint},
        block_number {bigint},
        block_hash TEXT,
        anchored_at {timestamp},
        PRIMARY KEY (kind, size),
        CHECK (state <> 'done' OR anchored_at IS NOT NULL)
    );
    CREATE INDEX IF NOT EXISTS ledger_anchors_done
        ON ledger_anchors (kind, size) WHERE state = 'done'
"""


def _tables(**types: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _TABLES.format(**types).split(";"))


SQLITE: Final[tuple[str, ...]] = (
    *_tables(bigint="INTEGER", timestamp="TEXT", blob="BLOB"),
    *(
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()}
        BEFORE {op} ON {table}
        BEGIN
            SELECT RAISE(ABORT, '{table} is append-only');
        END
        """
        for table in ("ledger_cosignatures", "ledger_published")
        for op in ("UPDATE", "DELETE")
    ),
    # INSERT OR REPLACE deletes the row it replaces without running DELETE
    # triggers: an insert meeting an existing key is dropped instead (which
    # is also what the store's ON CONFLICT DO NOTHING asks for).
    *(
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_replace
        BEFORE INSERT ON {table}
        WHEN EXISTS (SELECT 1 FROM {table} WHERE {key})
        BEGIN
            SELECT RAISE(IGNORE);
        END
        """
        for table, key in (
            ("ledger_cosignatures", "witness = NEW.witness AND size = NEW.size"),
            ("ledger_published", "size = NEW.size"),
            ("ledger_anchors", "kind = NEW.kind AND size = NEW.size"),
            ("ledger_checkpoints", "size = NEW.size"),
            ("ledger_leaves", "seq = NEW.seq"),
        )
    ),
    """
    CREATE TRIGGER IF NOT EXISTS ledger_anchors_done_is_final
    BEFORE UPDATE ON ledger_anchors
    WHEN OLD.state = 'done' OR NEW.kind <> OLD.kind OR NEW.size <> OLD.size
    BEGIN
        SELECT RAISE(ABORT, 'a finished ledger anchor never changes');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS ledger_anchors_no_delete
    BEFORE DELETE ON ledger_anchors
    BEGIN
        SELECT RAISE(ABORT, 'ledger_anchors are never deleted');
    END
    """,
)

PG_GUARD_TRIGGERS = """
    DO $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = '{table}'::regclass AND tgname = '{table}_guard'
        ) THEN
            CREATE TRIGGER {table}_guard BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION vault_{table}_guard();
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = '{table}'::regclass AND tgname = '{table}_no_truncate'
        ) THEN
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION vault_{table}_guard();
        END IF;
    END
    $$
"""
"""Row and TRUNCATE triggers running ``vault_<table>_guard()``, made once (``.format(table=)``)."""

POSTGRES: Final[tuple[str, ...]] = (
    *_tables(bigint="BIGINT", timestamp="TIMESTAMPTZ", blob="BYTEA"),
    *(
        f"""
        CREATE OR REPLACE FUNCTION vault_{table}_guard() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{table} is append-only'
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $$
        """
        for table in ("ledger_cosignatures", "ledger_published")
    ),
    """
    CREATE OR REPLACE FUNCTION vault_ledger_anchors_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.state <> 'done'
           AND NEW.kind = OLD.kind AND NEW.size = OLD.size THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'a finished ledger anchor never changes, and none is deleted'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    *(
        PG_GUARD_TRIGGERS.format(table=table)
        for table in ("ledger_cosignatures", "ledger_published", "ledger_anchors")
    ),
)
