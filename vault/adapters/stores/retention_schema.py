"""Schema 5: retention policies, each document's retention, legal holds, on both databases.

``retention_policies`` keeps every version of every document type's
policy (a new version is a new row; none is changed or removed).
``document_retention`` is each document's retention as it stands: the
policy version that set it, its mode and ``retain_until`` (a later
version may move it later, never earlier).

``storage_lock_queue`` names the documents whose object's lock must be
brought to what the records say (a retention set or lengthened, a hold
placed, changed or released); ``storage_locks`` is what the object store
was last told for each, so ``GET .../retention`` and the keeper see drift.

``legal_holds`` and ``legal_hold_items`` are never deleted: an item
removed keeps when, by whom and why; at most one active item a hold and
target (a partial unique index).

The triggers are the database's own refusal: a document row under
retention or an active hold cannot be deleted, nor a policy, a hold or an
item; a document's ``retain_until`` cannot move earlier.
"""

from __future__ import annotations

from typing import Final

_TABLES = """
    CREATE TABLE IF NOT EXISTS retention_policies (
        document_type TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        period TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('compliance', 'governance')),
        on_expiry TEXT NOT NULL CHECK (on_expiry IN ('review', 'dispose')),
        created_at {timestamp} NOT NULL,
        created_by {uuid},
        PRIMARY KEY (document_type, version)
    );
    CREATE TABLE IF NOT EXISTS document_retention (
        document_id {uuid} PRIMARY KEY,
        document_type TEXT NOT NULL,
        policy_version INTEGER NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('compliance', 'governance')),
        retain_until {timestamp} NOT NULL,
        updated_at {timestamp} NOT NULL
    );
    CREATE INDEX IF NOT EXISTS document_retention_by_type
        ON document_retention (document_type, document_id);
    CREATE INDEX IF NOT EXISTS document_retention_until
        ON document_retention (retain_until, document_id);
    CREATE TABLE IF NOT EXISTS legal_holds (
        hold_id {uuid} PRIMARY KEY,
        name TEXT NOT NULL,
        matter TEXT NOT NULL,
        reason TEXT NOT NULL,
        custodian TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'released')),
        created_at {timestamp} NOT NULL,
        created_by {uuid},
        released_at {timestamp},
        released_by {uuid},
        release_reason TEXT
    );
    CREATE INDEX IF NOT EXISTS legal_holds_newest ON legal_holds (created_at, hold_id);
    CREATE TABLE IF NOT EXISTS legal_hold_items (
        item_id {uuid} PRIMARY KEY,
        hold_id {uuid} NOT NULL REFERENCES legal_holds (hold_id),
        kind TEXT NOT NULL CHECK (kind IN ('document', 'entity')),
        target_id {uuid} NOT NULL,
        added_at {timestamp} NOT NULL,
        added_by {uuid},
        added_reason TEXT,
        removed_at {timestamp},
        removed_by {uuid},
        removed_reason TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS legal_hold_items_one_active
        ON legal_hold_items (hold_id, kind, target_id) WHERE removed_at IS NULL;
    CREATE INDEX IF NOT EXISTS legal_hold_items_target
        ON legal_hold_items (target_id, kind) WHERE removed_at IS NULL;
    CREATE TABLE IF NOT EXISTS storage_lock_queue (
        document_id {uuid} PRIMARY KEY,
        queued_at {timestamp} NOT NULL,
        token {uuid} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS storage_locks (
        document_id {uuid} PRIMARY KEY,
        mode TEXT,
        retain_until {timestamp},
        legal_hold {boolean} NOT NULL,
        applied_at {timestamp} NOT NULL
    )
"""

# A document is held while an active hold has an active item naming it or its entity.
_HELD = """
    EXISTS (SELECT 1 FROM legal_hold_items i JOIN legal_holds h ON h.hold_id = i.hold_id
            WHERE h.status = 'active' AND i.removed_at IS NULL
            AND ((i.kind = 'document' AND i.target_id = OLD.id)
                 OR (i.kind = 'entity' AND i.target_id = OLD.entity_id)))
"""
_RETAINED = """
    EXISTS (SELECT 1 FROM document_retention r
            WHERE r.document_id = OLD.id AND r.retain_until > {now})
"""


def _tables(**types: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _TABLES.format(**types).split(";"))


_SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%f', 'now')"
_SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER IF NOT EXISTS documents_kept_while_retained BEFORE DELETE ON documents
    WHEN {_RETAINED.format(now=_SQLITE_NOW)} OR {_HELD}
    BEGIN
        SELECT RAISE(ABORT, 'document under retention or legal hold');
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS document_retention_never_earlier
    BEFORE UPDATE OF retain_until ON document_retention
    WHEN NEW.retain_until < OLD.retain_until
    BEGIN
        SELECT RAISE(ABORT, 'retain_until never moves earlier');
    END
    """,
    *(
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
        BEGIN
            SELECT RAISE(ABORT, '{table} are never deleted');
        END
        """
        for table in ("retention_policies", "legal_holds", "legal_hold_items",
                      "document_retention")
    ),
    """
    CREATE TRIGGER IF NOT EXISTS retention_policies_no_update BEFORE UPDATE ON retention_policies
    BEGIN
        SELECT RAISE(ABORT, 'a retention policy version never changes');
    END
    """,
)

_PG_FUNCTIONS = (
    f"""
    CREATE OR REPLACE FUNCTION vault_documents_retention_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF {_RETAINED.format(now="now()")} OR {_HELD} THEN
            RAISE EXCEPTION 'document % under retention or legal hold', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_document_retention_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'UPDATE' THEN
            RAISE EXCEPTION 'document_retention rows are never deleted'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.retain_until < OLD.retain_until THEN
            RAISE EXCEPTION 'retain_until never moves earlier'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_never_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION vault_retention_policies_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'a retention policy version never changes'
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
)


def pg_trigger(table: str, name: str, when: str, function: str) -> str:
    """A PostgreSQL trigger, created once (PostgreSQL has no CREATE TRIGGER IF NOT EXISTS)."""
    return f"""
    DO $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = '{name}'
        ) THEN
            CREATE TRIGGER {name} {when} ON {table}
                FOR EACH {'STATEMENT' if 'TRUNCATE' in when else 'ROW'}
                EXECUTE FUNCTION {function}();
        END IF;
    END
    $$
    """


_PG_TRIGGERS = (
    pg_trigger("documents", "documents_kept_while_retained", "BEFORE DELETE",
                "vault_documents_retention_guard"),
    pg_trigger("document_retention", "document_retention_guard", "BEFORE UPDATE OR DELETE",
                "vault_document_retention_guard"),
    pg_trigger("retention_policies", "retention_policies_guard", "BEFORE UPDATE OR DELETE",
                "vault_retention_policies_guard"),
    *(
        pg_trigger(table, f"{table}_no_delete", "BEFORE DELETE", "vault_never_deleted")
        for table in ("legal_holds", "legal_hold_items")
    ),
    *(
        pg_trigger(table, f"{table}_no_truncate", "BEFORE TRUNCATE", "vault_never_deleted")
        for table in ("documents", "retention_policies", "document_retention", "legal_holds",
                      "legal_hold_items")
    ),
)

SQLITE: Final[tuple[str, ...]] = (
    *_tables(uuid="TEXT", timestamp="TEXT", boolean="INTEGER"),
    *_SQLITE_TRIGGERS,
)
POSTGRES: Final[tuple[str, ...]] = (
    *_tables(uuid="UUID", timestamp="TIMESTAMPTZ", boolean="BOOLEAN"),
    *_PG_FUNCTIONS,
    *_PG_TRIGGERS,
)
