"""What only the PostgreSQL store promises: its URLs, its schema on a seed-era
database, its behaviour across processes, and its answers when the database
is down or drops its connections.

Two stores (two pools) on one database stand in for two service replicas.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.pg import PgDatabase, libpq_url, with_database, with_parameters
from tests.vault import store_helpers
from tests.vault.store_helpers import (
    BASE,
    SEED_DOCUMENT_COLUMNS,
    SEED_PROCESSED_EVENT_COLUMNS,
    STORE_CALLS,
    archive_entity,
    list_all,
    make_document,
    make_event,
    no_events,
    upload,
)
from vault.adapters.stores.postgres import PostgresMetadataStore, connection_settings
from vault.domain.errors import DuplicateDocument, StoreUnavailable
from vault.domain.events import Destination
from vault.domain.log import SignedCheckpoint
from vault.domain.merkle import CompactRange, leaf_hash
from vault.domain.models import Document, DocumentStatus, DocumentType, EntityType

T = TypeVar("T")

# The seed's "Manual Schema Setup", verbatim.
SEED_SQL = """
-- Optional enums for stricter validation
CREATE TYPE "documententitytype" AS ENUM ('issuer', 'investor', 'deal', 'token', 'compliance');
CREATE TYPE "documenttype" AS ENUM ('operating_agreement', 'offering_memorandum', 'subscription', 'kyc', 'audit_report', 'other');
CREATE TYPE "documentstatus" AS ENUM ('uploaded', 'verified', 'mismatch', 'archived');

-- Documents
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
);

CREATE INDEX IF NOT EXISTS ix_documents_sha256_hash ON documents (sha256_hash);

-- Processed Events (for consumer deduplication)
CREATE TABLE IF NOT EXISTS processed_events (
    id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    event_id VARCHAR(255) NOT NULL UNIQUE,
    source VARCHAR(128) NOT NULL,
    action VARCHAR(128) NOT NULL,
    entity_id VARCHAR(255),
    entity_type VARCHAR(64)
);

CREATE INDEX IF NOT EXISTS ix_processed_events_event_id ON processed_events (event_id);
"""  # noqa: E501

# The same schema as earlier versions provisioned it: the enums as column types.
SEED_SQL_NATIVE_ENUMS = (
    SEED_SQL.replace("entity_type VARCHAR(32) NOT NULL", "entity_type documententitytype NOT NULL")
    .replace("document_type VARCHAR(32) NOT NULL", "document_type documenttype NOT NULL")
    .replace("status VARCHAR(16) NOT NULL", "status documentstatus NOT NULL")
)

SEED_ROW_INSERT = (
    "INSERT INTO documents (id, entity_type, entity_id, document_type, filename, mime_type,"
    " size_bytes, storage_bucket, storage_key, sha256_hash, status, uploaded_by, metadata,"
    " created_at, updated_at)"
    " VALUES (%s, 'investor', %s, 'subscription', %s, 'application/pdf', 2048, 'seed-bucket',"
    " %s, %s, %s, %s, %s::jsonb, %s, %s)"
)


def race(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """``store_helpers.race``, where a replica may also find the database unavailable."""
    return store_helpers.race(calls, catching=(DuplicateDocument, StoreUnavailable))


def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def stores(pg_database: PgDatabase) -> Iterator[Callable[..., PostgresMetadataStore]]:
    """Opens stores (not migrated) on any URL; closes them all at teardown."""
    opened: list[PostgresMetadataStore] = []

    def open_store(url: str | None = None, **options: Any) -> PostgresMetadataStore:
        store = PostgresMetadataStore(url or pg_database.url, **options)
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def clean(pg_database: PgDatabase) -> PgDatabase:
    """The session's database with every table emptied."""
    pg_database.truncate_all(keep=("schema_version",))
    return pg_database


@pytest.fixture
def two_stores(
    clean: PgDatabase, stores: Callable[..., PostgresMetadataStore]
) -> list[PostgresMetadataStore]:
    """Two migrated stores on the session's database, as two service replicas."""
    pair = [stores(), stores()]
    for store in pair:
        store.migrate()
    return pair


def leaves(database: PgDatabase) -> list[tuple[UUID, str, int | None]]:
    """(document_id, kind, leaf_index) of every leaf, in the order they were written."""
    rows = database.query("SELECT document_id, kind, leaf_index FROM ledger_leaves ORDER BY seq")
    return [(row[0], row[1], row[2]) for row in rows]


class TestUrls:
    @pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
    def test_accepted_schemes_reach_the_database(
        self, clean: PgDatabase, stores: Callable[..., PostgresMetadataStore], scheme: str
    ) -> None:
        """postgresql://, postgres:// and postgresql+psycopg:// all connect and store."""
        _, rest = libpq_url(clean.url).split("://", 1)
        store = stores(f"{scheme}://{rest}")
        store.migrate()

        stored = upload(store, make_document())

        assert store.get_document(stored.id) == stored

    @pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///tmp/x.db", "h:5432/db"])
    def test_other_urls_are_refused(self, url: str) -> None:
        """A URL that is not PostgreSQL's is a ValueError at construction."""
        with pytest.raises(ValueError, match="postgresql://"):
            PostgresMetadataStore(url)

    def test_plus_psycopg_is_dropped(self) -> None:
        """postgresql+psycopg:// means the same connection as postgresql://."""
        plain = connection_settings("postgresql://u:pw@db.example:5432/vault?sslmode=require")
        sqlalchemy = connection_settings(
            "postgresql+psycopg://u:pw@db.example:5432/vault?sslmode=require"
        )

        assert plain == sqlalchemy
        assert conninfo_to_dict(plain.conninfo)["sslmode"] == "require"

    def test_transaction_pooler_port_turns_prepared_statements_off(self) -> None:
        """Port 6543 (Supabase's transaction pooler) means prepare_threshold=None."""
        settings = connection_settings("postgresql://u:pw@pooler.example:6543/postgres")

        assert settings.connect_kwargs()["prepare_threshold"] is None

    def test_other_ports_keep_psycopgs_default(self) -> None:
        """Elsewhere psycopg's own prepare_threshold applies (nothing is passed)."""
        settings = connection_settings("postgresql://u:pw@db.example:5432/postgres")

        assert "prepare_threshold" not in settings.connect_kwargs()

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("none", None), ("None", None), ("NONE", None), ("0", 0), ("12", 12)],
    )
    def test_prepare_threshold_parameter_is_consumed(
        self, value: str, expected: int | None
    ) -> None:
        """?prepare_threshold= sets the threshold and never reaches libpq."""
        settings = connection_settings(
            f"postgresql://u@db.example:6543/vault?sslmode=disable&prepare_threshold={value}"
            "&application_name=replica%201"
        )

        params = conninfo_to_dict(settings.conninfo)
        assert settings.connect_kwargs()["prepare_threshold"] == expected
        assert "prepare_threshold" not in params
        assert (params["sslmode"], params["application_name"]) == ("disable", "replica 1")

    def test_bad_prepare_threshold_is_refused(self) -> None:
        """A prepare_threshold that is neither none nor a number is a ValueError."""
        with pytest.raises(ValueError, match="prepare_threshold"):
            connection_settings("postgresql://u@h/db?prepare_threshold=sometimes")

    def test_connect_timeout_defaults_but_the_url_wins(self) -> None:
        """A connect timeout of a few seconds applies unless the URL sets its own."""
        default = conninfo_to_dict(connection_settings("postgresql://u@h/db").conninfo)
        own = conninfo_to_dict(connection_settings("postgresql://u@h/db?connect_timeout=9").conninfo)

        assert 1 <= int(default["connect_timeout"]) <= 10
        assert own["connect_timeout"] == "9"

    def test_password_stays_out_of_reprs(self) -> None:
        """Neither the settings nor the store show the password."""
        url = "postgresql://vault:s3cret-pw@127.0.0.1:6543/vault"
        store = PostgresMetadataStore(url, min_size=0)
        try:
            shown = f"{connection_settings(url)!r} {store!r}"
        finally:
            store.close()

        assert "s3cret-pw" not in shown

    def test_pool_is_built_with_the_settings(self) -> None:
        """The pool connects with prepare_threshold=None on 6543, in autocommit."""
        port_6543 = PostgresMetadataStore("postgresql://u@127.0.0.1:6543/db", min_size=0)
        explicit = PostgresMetadataStore("postgresql://u@127.0.0.1:5432/db?prepare_threshold=2")
        try:
            assert port_6543._pool.kwargs == {"autocommit": True, "prepare_threshold": None}
            assert explicit._pool.kwargs == {"autocommit": True, "prepare_threshold": 2}
        finally:
            port_6543.close()
            explicit.close()

    @pytest.mark.parametrize(("threshold", "prepared"), [("none", False), ("1", True)])
    def test_prepare_threshold_reaches_the_connection(
        self,
        clean: PgDatabase,
        stores: Callable[..., PostgresMetadataStore],
        threshold: str,
        prepared: bool,
    ) -> None:
        """With prepare_threshold=none the server holds no prepared statement."""
        store = stores(with_parameters(clean.url, prepare_threshold=threshold), max_size=1)
        store.migrate()
        stored = upload(store, make_document())
        for _ in range(6):
            store.get_document(stored.id)

        with store._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()

        assert row is not None
        assert (row[0] > 0) is prepared


class TestSchema:
    def test_seed_tables_column_for_column(
        self, clean: PgDatabase, stores: Callable[..., PostgresMetadataStore]
    ) -> None:
        """documents and processed_events have the seed's columns, order and types."""
        stores().migrate()

        rows = clean.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name IN ('documents', 'processed_events')"
            " ORDER BY table_name, ordinal_position"
        )

        columns = {
            table: [name for t, name, _ in rows if t == table]
            for table in ("documents", "processed_events")
        }
        types = {(t, name): data_type for t, name, data_type in rows}
        assert columns == {
            "documents": SEED_DOCUMENT_COLUMNS,
            "processed_events": SEED_PROCESSED_EVENT_COLUMNS,
        }
        assert types["documents", "id"] == "uuid"
        assert types["documents", "created_at"] == "timestamp with time zone"
        assert types["documents", "metadata"] == "jsonb"
        assert types["documents", "status"] == "character varying"
        assert types["documents", "size_bytes"] == "bigint"  # the seed's INTEGER, widened
        assert types["processed_events", "id"] == "uuid"

    def test_concurrent_migrations_all_succeed(
        self, pg_database: PgDatabase, stores: Callable[..., PostgresMetadataStore]
    ) -> None:
        """Replicas migrating an empty schema at once all succeed; the schema is whole."""
        with pg_database.fresh_schema("migrate") as url:
            replicas = [stores(url) for _ in range(4)]

            outcomes = race([r.migrate for r in replicas])

            assert outcomes == [None] * 4
            stored = upload(replicas[0], make_document())
            assert replicas[3].get_document(stored.id) == stored
            for replica in replicas:
                replica.close()

    @pytest.mark.parametrize(
        "statement",
        ["UPDATE ledger_leaves SET kind = 'verified'", "DELETE FROM ledger_leaves",
         "TRUNCATE ledger_leaves", "TRUNCATE ledger_leaves RESTART IDENTITY CASCADE",
         "UPDATE ledger_leaves SET leaf_index = leaf_index + 1",
         "UPDATE ledger_tiles SET hashes = substring(hashes FROM 1 FOR 32)",
         "DELETE FROM ledger_tiles", "TRUNCATE ledger_tiles",
         "UPDATE ledger_checkpoints SET note = 'x'", "DELETE FROM ledger_checkpoints",
         "TRUNCATE ledger_checkpoints", "TRUNCATE ledger_entries"],
    )  # fmt: skip
    def test_the_log_refuses_rewrites_through_any_session(
        self, clean: PgDatabase, statement: str
    ) -> None:
        """The log's triggers are the database's own: another session cannot rewrite it."""
        store = PostgresMetadataStore(clean.url)
        try:
            store.migrate()
            doc = upload(store, make_document())
            upload(store, make_document())
            store.integrate_leaves(256, BASE)
            head = store.ledger_head()
            store.add_checkpoint(SignedCheckpoint(head.size, head.tree.root(), "note\n", BASE))
        finally:
            store.close()
        before = leaves(clean)

        with pytest.raises(psycopg.Error, match=r"append-only|only grow"):
            clean.query(statement)

        assert leaves(clean) == before
        assert before[0] == (doc.id, "registered", 0)

    def test_sizes_beyond_two_gib_are_recorded(
        self, clean: PgDatabase, stores: Callable[..., PostgresMetadataStore]
    ) -> None:
        """A document of 5 GiB records its size, and the store says it holds 64-bit sizes."""
        store = stores()
        store.migrate()
        doc = upload(store, make_document(size_bytes=5 * 2**30))

        assert store.get_document(doc.id).size_bytes == 5 * 2**30
        assert store.size_limit() == 2**63 - 1


class TestSeedEraDatabase:
    """A database provisioned with the seed's SQL, holding rows written before this service."""

    @pytest.fixture(params=["seed-verbatim", "native-enum-columns"])
    def seed_url(self, request: pytest.FixtureRequest, pg_database: PgDatabase) -> Iterator[str]:
        seed_sql = SEED_SQL if request.param == "seed-verbatim" else SEED_SQL_NATIVE_ENUMS
        with pg_database.fresh_schema("seed") as url:
            with pg_database.connect(url) as conn:
                conn.execute(seed_sql)
            yield url

    def seed_row(
        self,
        database: PgDatabase,
        url: str,
        *,
        entity_id: UUID,
        sha256_hash: str,
        status: str = "uploaded",
        created_at: datetime,
    ) -> UUID:
        doc_id = uuid4()
        database.query(
            SEED_ROW_INSERT,
            [
                doc_id,
                entity_id,
                f"seed-{doc_id}.pdf",
                f"documents/{doc_id}",
                sha256_hash,
                status,
                uuid4(),
                '{"source": "seed", "pages": 3}',
                created_at,
                created_at,
            ],
            url=url,
        )
        return doc_id

    def test_migrate_keeps_and_serves_seed_rows(
        self,
        pg_database: PgDatabase,
        stores: Callable[..., PostgresMetadataStore],
        seed_url: str,
    ) -> None:
        """After migrate, seed rows read, list, guard their hashes and archive like new ones."""
        entity_id, sha = uuid4(), "5e" * 32
        older, newer = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
        first = self.seed_row(
            pg_database, seed_url, entity_id=entity_id, sha256_hash=sha, created_at=older
        )
        twin = self.seed_row(
            pg_database, seed_url, entity_id=entity_id, sha256_hash=sha, created_at=newer
        )
        gone = self.seed_row(
            pg_database,
            seed_url,
            entity_id=entity_id,
            sha256_hash="0f" * 32,
            status="archived",
            created_at=older,
        )
        store = stores(seed_url)

        store.migrate()
        store.migrate()

        loaded = store.get_document(first)
        assert (loaded.entity_type, loaded.document_type, loaded.status) == (
            EntityType.INVESTOR,
            DocumentType.SUBSCRIPTION,
            DocumentStatus.UPLOADED,
        )
        assert (loaded.metadata, loaded.created_at) == ({"source": "seed", "pages": 3}, older)
        assert [d.id for d in list_all(store, entity_id)] == [twin, first]
        assert {d.id for d in list_all(store, entity_id, include_archived=True)} == {
            first,
            twin,
            gone,
        }
        assert [d.id for d in list_all(store, entity_id, entity_type=EntityType.INVESTOR)] == [
            twin,
            first,
        ]
        with pytest.raises(DuplicateDocument) as caught:
            upload(store, make_document(entity_id=entity_id, sha256_hash=sha))
        assert caught.value.existing_document_id == first

        archived, changed = store.archive_document(
            twin, archived_by=None, archived_at=BASE, events=no_events
        )
        assert (archived.status, changed) == (DocumentStatus.ARCHIVED, True)
        assert archive_entity(store, entity_id, "evt-seed") == 1
        assert archive_entity(store, entity_id, "evt-seed") is None
        assert store.find_active_duplicate(entity_id, sha) is None
        fresh = upload(store, make_document(entity_id=entity_id, sha256_hash=sha))
        assert store.registered_leaf(fresh.id) is not None

    def test_enum_columns_become_the_seeds_varchars(
        self,
        pg_database: PgDatabase,
        stores: Callable[..., PostgresMetadataStore],
        seed_url: str,
    ) -> None:
        """migrate leaves documents' enum-typed columns as the seed's VARCHARs."""
        self.seed_row(
            pg_database, seed_url, entity_id=uuid4(), sha256_hash="ab" * 32, created_at=BASE
        )

        stores(seed_url).migrate()

        rows = pg_database.query(
            "SELECT column_name, data_type, character_maximum_length"
            " FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'documents'"
            " AND column_name IN ('entity_type', 'document_type', 'status')"
            " ORDER BY column_name",
            url=seed_url,
        )
        assert rows == [
            ("document_type", "character varying", 32),
            ("entity_type", "character varying", 32),
            ("status", "character varying", 16),
        ]


    def test_seed_integer_sizes_are_widened_in_place(
        self,
        pg_database: PgDatabase,
        stores: Callable[..., PostgresMetadataStore],
        seed_url: str,
    ) -> None:
        """The seed's size_bytes INTEGER becomes BIGINT, keeping its rows' sizes."""
        doc_id = self.seed_row(
            pg_database, seed_url, entity_id=uuid4(), sha256_hash="cd" * 32, created_at=BASE
        )
        store = stores(seed_url)
        before = store.size_limit()
        size = pg_database.query("SELECT size_bytes FROM documents", url=seed_url)

        store.migrate()

        (column,) = pg_database.query(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'documents'"
            " AND column_name = 'size_bytes'",
            url=seed_url,
        )
        assert (before, store.size_limit(), column) == (2**31 - 1, 2**63 - 1, ("bigint",))
        assert pg_database.query("SELECT size_bytes FROM documents", url=seed_url) == size
        assert store.get_document(doc_id).size_bytes == size[0][0]


class TestAcrossProcesses:
    def test_identical_uploads_store_one(
        self, clean: PgDatabase, two_stores: list[PostgresMetadataStore]
    ) -> None:
        """Twenty identical uploads over two stores: one stored, nineteen name it."""
        entity_id, sha = uuid4(), "ee" * 32
        docs = [make_document(entity_id=entity_id, sha256_hash=sha) for _ in range(20)]

        outcomes = race([partial(upload, two_stores[i % 2], doc) for i, doc in enumerate(docs)])

        winners = [o for o in outcomes if isinstance(o, Document)]
        losers = [o for o in outcomes if isinstance(o, DuplicateDocument)]
        assert len(winners) == 1
        assert len(losers) == 19
        assert {loser.existing_document_id for loser in losers} == {winners[0].id}
        assert leaves(clean) == [(winners[0].id, "registered", None)]

    def test_two_processes_integrate_into_one_tree(
        self, clean: PgDatabase, two_stores: list[PostgresMetadataStore]
    ) -> None:
        """Uploads and integrations racing over two stores: every leaf one index, no gap."""
        docs = [make_document() for _ in range(60)]

        def integrate(store: PostgresMetadataStore) -> int:
            return store.integrate_leaves(7, BASE).added

        outcomes = race(
            [partial(upload, two_stores[i % 2], doc) for i, doc in enumerate(docs)]
            + [partial(integrate, two_stores[i % 2]) for i in range(12)]
        )
        assert all(isinstance(o, Document | int) for o in outcomes)
        while two_stores[0].integrate_leaves(7, BASE).added:
            pass

        indexes = sorted(index for _, _, index in leaves(clean))
        assert indexes == list(range(60))
        head = two_stores[1].ledger_head()
        assert head.size == 60
        by_index = {index: doc_id for doc_id, _, index in leaves(clean)}
        expected = CompactRange()
        for index in range(60):
            found = two_stores[0].registered_leaf(by_index[index])
            assert found is not None and found.leaf_index == index
            expected, _ = expected.append(leaf_hash(found.leaf))
        assert head.tree == expected

    def test_concurrent_claims_never_share_a_row(
        self, two_stores: list[PostgresMetadataStore]
    ) -> None:
        """Eight publishers over two stores drain the outbox; no row is handed out twice."""
        events = [make_event() for _ in range(300)]
        two_stores[0].append_events(events)

        def drain(store: PostgresMetadataStore) -> list[int]:
            taken: list[int] = []
            while rows := store.claim_outbox([Destination.DOCUMENT_EVENTS], 7, BASE, 60):
                taken += [r.id for r in rows]
            return taken

        outcomes = race([partial(drain, two_stores[i % 2]) for i in range(8)])

        claimed = [row_id for taken in outcomes if isinstance(taken, list) for row_id in taken]
        leftover = two_stores[0].claim_outbox([Destination.DOCUMENT_EVENTS], 1000, BASE, 60)
        claimed += [r.id for r in leftover]
        assert len(claimed) == len(set(claimed)) == 300

    def test_one_event_archives_once(self, two_stores: list[PostgresMetadataStore]) -> None:
        """The same entity-deletion event delivered to both stores at once archives once."""
        entity_id = uuid4()
        for _ in range(3):
            upload(two_stores[0], make_document(entity_id=entity_id))

        outcomes = race(
            [partial(archive_entity, two_stores[i % 2], entity_id, "evt-twice") for i in range(6)]
        )

        assert sorted(outcomes, key=lambda o: o is None) == [3, None, None, None, None, None]


class TestUnavailable:
    @pytest.mark.parametrize("pre_ping", [True, False])
    def test_recovers_after_connections_are_terminated(
        self,
        clean: PgDatabase,
        stores: Callable[..., PostgresMetadataStore],
        pre_ping: bool,
    ) -> None:
        """After the server drops every connection, the store answers again by itself."""
        name = f"vault-recover-{uuid4().hex[:8]}"
        store = stores(
            with_parameters(clean.url, application_name=name), pre_ping=pre_ping, min_size=3
        )
        store.migrate()
        stored = upload(store, make_document())
        store._pool.wait(timeout=5)  # all three connections open, so all three die

        assert clean.terminate(application_name=name) >= 3

        try:
            first: Document | StoreUnavailable = store.get_document(stored.id)
        except StoreUnavailable as exc:
            first = exc
        second = store.get_document(stored.id)

        if pre_ping:
            assert first == stored  # the dead connections were replaced before use
        else:
            assert isinstance(first, StoreUnavailable)
            assert isinstance(first.__cause__, psycopg.OperationalError)
        assert second == stored
        assert upload(store, make_document()).on_chain_reference is not None

    def test_down_database_is_unavailable_quickly(self) -> None:
        """Against a closed port, construction returns at once and ping fails within its timeout."""
        started = time.monotonic()
        store = PostgresMetadataStore(f"postgresql://u@127.0.0.1:{closed_port()}/db", timeout=1.0)
        try:
            constructed = time.monotonic() - started
            with pytest.raises(StoreUnavailable) as caught:
                store.ping()
            failed = time.monotonic() - started
        finally:
            store.close()

        assert constructed < 0.5
        assert failed < 3.0
        assert isinstance(caught.value.__cause__, psycopg.Error)

    @pytest.mark.parametrize("call", sorted(STORE_CALLS))
    def test_every_method_maps_driver_errors(self, call: str) -> None:
        """With the database down, each method raises StoreUnavailable caused by psycopg."""
        store = PostgresMetadataStore(f"postgresql://u@127.0.0.1:{closed_port()}/db", timeout=0.2)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                STORE_CALLS[call](store)
        finally:
            store.close()

        assert isinstance(caught.value.__cause__, psycopg.Error)

    def test_missing_database_is_unavailable(self, pg_database: PgDatabase) -> None:
        """A database that does not exist on a running server gives StoreUnavailable."""
        missing = with_database(pg_database.url, f"absent_{uuid4().hex[:8]}")
        store = PostgresMetadataStore(missing, timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                store.migrate()
        finally:
            store.close()

        assert isinstance(caught.value.__cause__, psycopg.Error)

    def test_closed_store_is_unavailable(self, clean: PgDatabase) -> None:
        """Using a closed store raises StoreUnavailable; closing twice is harmless."""
        store = PostgresMetadataStore(clean.url)
        store.migrate()
        store.close()
        store.close()

        with pytest.raises(StoreUnavailable):
            store.ping()
