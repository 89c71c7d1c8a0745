"""PostgreSQL for tests: one throwaway database per test session on a real server.

The server is the one ``VAULT_TEST_DATABASE_URL`` names (an admin URL: its
user may create databases), else ``postgresql://postgres@127.0.0.1:5432/postgres``.
``pg_database`` (session-scoped and synchronous, so one database serves every
test of the session, whatever ``trio.run`` a test has) creates
``vault_test_<random>`` there and drops it at the end. Without a reachable
server, tests that use it skip and say how to provide one; under ``CI=true``
they fail instead.

A suite uses it by importing the fixture into its ``conftest.py``::

    from tests.pg import pg_database  # noqa: F401  (a fixture, used by name)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import psycopg
import pytest
from psycopg import sql

from vault.config import mask_url_password

ENV_VAR = "VAULT_TEST_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_SECONDS = 3
LOCK_TIMEOUT = "10s"
"""How long cleaning up waits for a lock before failing instead of hanging."""


def admin_url() -> str:
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT_ADMIN_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def no_server(problem: str) -> NoReturn:
    """Skip (or, under ``CI=true``, fail) a test that needs PostgreSQL."""
    reason = (
        f"PostgreSQL is not available: {problem}. Set {ENV_VAR} to an admin URL "
        "(postgresql://user:password@host:port/dbname, allowed to CREATE DATABASE) "
        "or start PostgreSQL on 127.0.0.1:5432 with user postgres"
    )
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing PostgreSQL fails the run)", pytrace=False)
    pytest.skip(reason)


def libpq_url(url: str) -> str:
    """The URL as libpq takes it (SQLAlchemy's ``postgresql+psycopg`` spelling dropped)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() == "postgresql+psycopg":
        return f"postgresql://{rest}"
    return url


def with_database(url: str, dbname: str) -> str:
    """``url`` naming another database on the same server, query kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


def with_parameters(url: str, **parameters: str) -> str:
    """``url`` with libpq query parameters added (values percent-encoded)."""
    parts = urlsplit(url)
    extra = "&".join(f"{key}={quote(value, safe='')}" for key, value in parameters.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def schema_url(url: str, schema: str) -> str:
    """``url`` whose sessions see only ``schema`` (and ``pg_catalog``)."""
    return with_parameters(url, options=f"-csearch_path={schema}")


@attrs.frozen
class PgDatabase:
    """The session's database and the server it lives on."""

    name: str
    url: str
    """The session's database (what a store under test connects to)."""
    admin_url: str

    def connect(self, url: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit connection to ``url`` (the session's database by default)."""
        return psycopg.connect(
            libpq_url(url or self.url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )

    def query(
        self,
        statement: str | sql.Composed,
        params: Sequence[object] = (),
        *,
        url: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; the rows it returns, if any."""
        with self.connect(url) as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description is not None else []

    def truncate_all(self, *, schema: str = "public", keep: Sequence[str] = ()) -> None:
        """Empty every table of ``schema`` but ``keep`` (a clean slate, schema kept).

        The ledger refuses ``TRUNCATE`` (a statement trigger); this session
        runs as a replica (``session_replication_role``, a superuser's
        setting), which fires no ordinary trigger, so append-only tables
        empty too.
        """
        with self.connect() as conn:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            conn.execute("SET session_replication_role = replica")
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                    (schema,),
                ).fetchall()
                if name not in keep
            ]
            if tables:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
                    )
                )

    @contextlib.contextmanager
    def fresh_schema(self, prefix: str = "t") -> Iterator[str]:
        """A new empty schema; yields a URL whose sessions see only it. Dropped after."""
        schema = f"{prefix}_{secrets.token_hex(4)}"
        self.query(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield schema_url(self.url, schema)
        finally:
            self.query(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    def terminate(self, *, application_name: str | None = None) -> int:
        """Terminate other sessions on the session's database (or those of one
        application), waiting until they are gone; how many there were."""
        rows = self.query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND (%s::text IS NULL OR application_name = %s::text)",
            (self.name, application_name, application_name),
            url=self.admin_url,
        )
        return len(rows)


def _connect_admin(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            libpq_url(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        no_server(f"cannot connect to {mask_url_password(url)} ({first_line})")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """A fresh database for this test session, dropped (connections and all) at the end."""
    url = admin_url()
    name = f"vault_test_{secrets.token_hex(6)}"
    with _connect_admin(url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PgDatabase(name=name, url=with_database(url, name), admin_url=url)
    finally:
        with _connect_admin(url) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
