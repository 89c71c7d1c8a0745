"""Fixtures shared by the vault's adapter contract suites.

``store`` is a migrated ``MetadataStore`` for each backend in
``STORE_BACKENDS``. A backend is a context manager yielding a
``StoreBackend`` (defined in ``store_helpers``).

The PostgreSQL backend uses the session's throwaway database from
``tests.pg`` (skipped, or failed under ``CI=true``, without a server) and
empties its tables before each test.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from tests.pg import PgDatabase
from tests.vault.store_helpers import StoreBackend
from vault.adapters.stores.postgres import PostgresMetadataStore
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.ports import MetadataStore


@contextlib.contextmanager
def _sqlite_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    path = tmp_path / "vault.sqlite3"
    opened: list[SQLiteMetadataStore] = []

    def open_store() -> MetadataStore:
        store = SQLiteMetadataStore(path)
        opened.append(store)
        store.migrate()
        return store

    def execute(sql: str, params: Sequence[object]) -> None:
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()

    try:
        yield StoreBackend("sqlite", open_store, execute, sqlite3.DatabaseError)
    finally:
        for store in opened:
            store.close()


@contextlib.contextmanager
def _postgres_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    database: PgDatabase = request.getfixturevalue("pg_database")
    database.truncate_all(keep=("schema_version",))
    opened: list[PostgresMetadataStore] = []

    def open_store() -> MetadataStore:
        store = PostgresMetadataStore(database.url)
        opened.append(store)
        store.migrate()
        return store

    def execute(sql: str, params: Sequence[object]) -> None:
        # The contract suite writes SQLite's ``?`` placeholders.
        database.query(sql.replace("?", "%s"), params)

    try:
        yield StoreBackend("postgres", open_store, execute, psycopg.Error)
    finally:
        for store in opened:
            store.close()


STORE_BACKENDS: dict[
    str, Callable[[pytest.FixtureRequest], contextlib.AbstractContextManager[StoreBackend]]
] = {
    "sqlite": _sqlite_backend,
    "postgres": _postgres_backend,
}


@pytest.fixture(params=sorted(STORE_BACKENDS))
def store_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    with STORE_BACKENDS[request.param](request) as backend:
        yield backend


@pytest.fixture
def pg_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    """PostgreSQL alone: for races only a database with concurrent writers can show."""
    with STORE_BACKENDS["postgres"](request) as backend:
        yield backend


@pytest.fixture
def store(store_backend: StoreBackend) -> MetadataStore:
    return store_backend.open_store()
