"""The SQL core's statement compiler: one ``Q``, each dialect's spelling."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from psycopg.types.json import Jsonb

from vault.adapters.stores.postgres import PostgresDialect
from vault.adapters.stores.sql import Q, Session
from vault.adapters.stores.sqlite import SQLiteDialect
from vault.domain.models import DocumentStatus

SQLITE = SQLiteDialect()
POSTGRES = PostgresDialect()


class TestCompile:
    def test_parameters_take_each_drivers_placeholder(self) -> None:
        """``$name`` becomes ``:name`` on SQLite and ``%(name)s`` on psycopg."""
        q = Q("SELECT id FROM documents WHERE entity_id = $entity_id AND status = $status")
        assert q.compile(SQLITE, {}) == (
            "SELECT id FROM documents WHERE entity_id = :entity_id AND status = :status"
        )
        assert q.compile(POSTGRES, {}) == (
            "SELECT id FROM documents WHERE entity_id = %(entity_id)s AND status = %(status)s"
        )

    def test_fragments_are_the_dialects_own(self) -> None:
        """``{for_update}`` is a row lock on PostgreSQL and nothing on SQLite."""
        q = Q("SELECT id FROM documents WHERE id = $id{for_update}")
        assert q.compile(SQLITE, {}) == "SELECT id FROM documents WHERE id = :id"
        assert q.compile(POSTGRES, {}) == "SELECT id FROM documents WHERE id = %(id)s FOR UPDATE"

    def test_list_parameters_expand_to_one_placeholder_per_item(self) -> None:
        """``$*ids`` becomes as many numbered parameters as the list is long."""
        q = Q("UPDATE outbox SET leased_until = NULL WHERE id IN ($*ids)")
        assert q.compile(SQLITE, {"ids": 3}).endswith("IN (:ids_0, :ids_1, :ids_2)")
        assert q.compile(POSTGRES, {"ids": 2}).endswith("IN (%(ids_0)s, %(ids_1)s)")

    def test_an_empty_list_parameter_is_refused(self) -> None:
        """``IN ()`` is not SQL; an empty list is the caller's bug, said at once."""
        q = Q("DELETE FROM outbox WHERE id IN ($*ids)")
        with pytest.raises(ValueError, match="ids"):
            q.compile(SQLITE, {"ids": 0})

    def test_percent_signs_stay_literal_for_psycopg(self) -> None:
        """A ``%`` in the text is doubled for psycopg, so it is not read as a placeholder."""
        q = Q("SELECT 100 % 7 AS r WHERE $x = 1")
        assert q.compile(POSTGRES, {}) == "SELECT 100 %% 7 AS r WHERE %(x)s = 1"
        assert q.compile(SQLITE, {}) == "SELECT 100 % 7 AS r WHERE :x = 1"

    def test_whitespace_is_folded(self) -> None:
        """Statements written over several lines compile to one line."""
        assert Q("SELECT 1\n   FROM t\n WHERE a = $a").sql == "SELECT 1 FROM t WHERE a = $a"

    @pytest.mark.parametrize("sql", ["SELECT $ FROM t", "SELECT {for_update FROM t", "SELECT }"])
    def test_malformed_holes_are_refused_when_written(self, sql: str) -> None:
        """A lone ``$``, ``{`` or ``}`` fails where the statement is written, not when it runs."""
        with pytest.raises(ValueError, match="malformed"):
            Q(sql)

    def test_unknown_fragment_is_an_error(self) -> None:
        """A fragment no dialect supplies fails on compile, naming it."""
        with pytest.raises(KeyError, match="nolock"):
            Q("SELECT 1{nolock}").compile(SQLITE, {})

    def test_compiled_text_is_cached_per_dialect_and_length(self) -> None:
        """Compiling twice gives the very same string object."""
        q = Q("SELECT 1 WHERE id IN ($*ids)")
        assert q.compile(SQLITE, {"ids": 2}) is q.compile(SQLITE, {"ids": 2})
        assert q.compile(SQLITE, {"ids": 2}) != q.compile(SQLITE, {"ids": 3})


class TestEncoding:
    def test_sqlite_keeps_text(self) -> None:
        """UUIDs, aware datetimes (in UTC), enums and JSON objects become SQLite's text."""
        moment = datetime(2025, 10, 23, 14, 34, 56, 789000, tzinfo=timezone(timedelta(hours=2)))
        doc_id = uuid.UUID("5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14")
        assert SQLITE.encode(doc_id) == "5a0f3c1e-4b7d-4e2a-9c61-2d8f0b7e3a14"
        assert SQLITE.encode(moment) == "2025-10-23T12:34:56.789000+00:00"
        assert SQLITE.encode(DocumentStatus.ARCHIVED) == "archived"
        assert SQLITE.encode({"tags": ["ä"]}) == '{"tags":["ä"]}'
        assert SQLITE.encode(7) == 7

    def test_postgres_keeps_native_values(self) -> None:
        """UUIDs and datetimes go to psycopg as they are; JSON objects as jsonb."""
        moment = datetime(2025, 10, 23, 12, 34, 56, tzinfo=UTC)
        doc_id = uuid.uuid4()
        assert POSTGRES.encode(doc_id) is doc_id
        assert POSTGRES.encode(moment) is moment
        assert POSTGRES.encode(DocumentStatus.VERIFIED) == "verified"
        encoded = POSTGRES.encode({"a": 1})
        assert isinstance(encoded, Jsonb) and encoded.obj == {"a": 1}

    @pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
    def test_naive_datetimes_are_refused(self, dialect: SQLiteDialect | PostgresDialect) -> None:
        """A datetime without a zone names no instant; both dialects refuse it."""
        with pytest.raises(ValueError, match="timezone-aware"):
            dialect.encode(datetime(2025, 1, 1))


class TestSession:
    def test_runs_statements_with_encoded_and_expanded_parameters(self) -> None:
        """A session binds by name, expands lists and returns rows as mappings."""
        conn = sqlite3.connect(":memory:")
        conn.row_factory = lambda cur, row: dict(
            zip([d[0] for d in cur.description], row, strict=True)
        )
        db = Session(conn.cursor(), SQLITE)
        db.execute(Q("CREATE TABLE t (id TEXT, at TEXT, n INTEGER)"))
        ids = [uuid.uuid4() for _ in range(3)]
        at = datetime(2025, 1, 1, tzinfo=UTC)
        db.many(Q("INSERT INTO t VALUES ($id, $at, $n)"), [
            {"id": doc_id, "at": at, "n": n} for n, doc_id in enumerate(ids)
        ])  # fmt: skip
        changed = db.execute(Q("UPDATE t SET n = n + 10 WHERE id IN ($*ids)"), ids=ids[:2])
        rows = db.all(Q("SELECT id, at, n FROM t WHERE at = $at ORDER BY n"), at=at)
        assert changed == 2
        assert [row["n"] for row in rows] == [2, 10, 11]
        assert rows[0]["at"] == "2025-01-01T00:00:00.000000+00:00"
        assert db.one(Q("SELECT n FROM t WHERE id = $id"), id=uuid.uuid4()) is None

    def test_many_with_no_parameter_sets_runs_nothing(self) -> None:
        """An empty batch is no statement at all (the table need not even exist)."""
        conn = sqlite3.connect(":memory:")
        Session(conn.cursor(), SQLITE).many(Q("INSERT INTO missing VALUES ($x)"), [])
