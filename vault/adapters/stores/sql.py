"""Statements written once, run on any dialect: ``Q`` and the ``Session`` that runs it.

A ``Q`` is SQL with three kinds of holes:

- ``$name``: a parameter, bound by keyword when the statement runs;
- ``$*name``: a list parameter, expanded to one parameter per item
  (``id IN ($*ids)``); the statement is compiled once per list length;
- ``{name}``: a fragment the dialect supplies, for the few clauses that
  differ between SQLite and PostgreSQL (``{for_update}``, ``{skip_locked}``).

Each dialect compiles a ``Q`` to its driver's placeholder style (SQLite's
``:name``, psycopg's ``%(name)s``) and encodes the values it binds (UUIDs,
timestamps, JSON) the way its columns hold them; a compiled statement is
cached on the ``Q``. Nothing here does I/O: a ``Session`` runs statements
on a DB-API cursor the dialect opened.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]

_HOLE = re.compile(r"\$(\*?)([a-z_][a-z0-9_]*)|\{([a-z_]+)\}")


class Dialect(Protocol):
    """How one database spells what ``Q`` leaves open."""

    name: str
    fragments: Mapping[str, str]

    def placeholder(self, name: str) -> str:
        """The driver's placeholder for the parameter ``name``."""

    def escape(self, sql: str) -> str:
        """``sql`` with characters the driver would read as placeholders made literal."""

    def encode(self, value: object) -> object:
        """A Python value as the driver should bind it."""


class Q:
    """One statement, written once with named parameters and dialect fragments."""

    __slots__ = ("_compiled", "_plain", "sql")

    def __init__(self, sql: str) -> None:
        self.sql = " ".join(sql.split())
        self._plain: dict[str, str] = {}
        """Compiled per dialect, for calls without list parameters (the common case)."""
        self._compiled: dict[tuple[str, tuple[tuple[str, int], ...]], str] = {}
        self._check()

    def __repr__(self) -> str:
        return f"Q({self.sql!r})"

    def _check(self) -> None:
        """Refuse a statement whose holes are malformed (a lone ``$`` or ``{``)."""
        stripped = _HOLE.sub("", self.sql)
        if "$" in stripped or "{" in stripped or "}" in stripped:
            raise ValueError(f"malformed parameter or fragment in {self.sql!r}")

    def compile(self, dialect: Dialect, lengths: Mapping[str, int]) -> str:
        """The statement in ``dialect``'s spelling; ``lengths`` sizes each list parameter."""
        if not lengths:
            plain = self._plain.get(dialect.name)
            if plain is None:
                plain = self._plain[dialect.name] = self._compile(dialect, lengths)
            return plain
        key = (dialect.name, tuple(sorted(lengths.items())))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(dialect, lengths)
            self._compiled[key] = compiled
        return compiled

    def _compile(self, dialect: Dialect, lengths: Mapping[str, int]) -> str:
        out: list[str] = []
        position = 0
        for match in _HOLE.finditer(self.sql):
            out.append(dialect.escape(self.sql[position : match.start()]))
            position = match.end()
            star, name, fragment = match.groups()
            if fragment is not None:
                out.append(dialect.fragments[fragment])
            elif star:
                count = lengths.get(name, 0)
                if count < 1:
                    raise ValueError(f"list parameter {name!r} of {self.sql!r} is empty")
                out.append(", ".join(dialect.placeholder(f"{name}_{i}") for i in range(count)))
            else:
                out.append(dialect.placeholder(name))
        out.append(dialect.escape(self.sql[position:]))
        return "".join(out)


class Cursor(Protocol):
    """The part of a DB-API cursor a ``Session`` uses (rows as mappings)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Mapping[str, Any], /) -> Any: ...

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Session:
    """Runs ``Q`` statements on one cursor of one dialect.

    Values are encoded by the dialect; rows come back as mappings keyed by
    column name. ``pipeline`` groups statements into one round trip where
    the driver can (psycopg's pipeline mode), and does nothing elsewhere.
    """

    def __init__(
        self,
        cursor: Cursor,
        dialect: Dialect,
        pipeline: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self._cursor = cursor
        self._dialect = dialect
        self._pipeline = pipeline

    def execute(self, query: Q, **params: object) -> int:
        """Run one statement; the number of rows it changed."""
        sql, bound = self._bind(query, params)
        self._cursor.execute(sql, bound)
        return int(self._cursor.rowcount)

    def one(self, query: Q, **params: object) -> Row | None:
        """The statement's first row, or None."""
        sql, bound = self._bind(query, params)
        self._cursor.execute(sql, bound)
        row: Row | None = self._cursor.fetchone()
        return row

    def all(self, query: Q, **params: object) -> list[Row]:
        sql, bound = self._bind(query, params)
        self._cursor.execute(sql, bound)
        rows: list[Row] = list(self._cursor.fetchall())
        return rows

    def many(self, query: Q, params: Iterable[Mapping[str, object]]) -> None:
        """Run one statement once per parameter set (nothing when there are none)."""
        batch = list(params)
        if not batch:
            return
        sql, _ = self._bind(query, batch[0])
        encode = self._dialect.encode
        self._cursor.executemany(
            sql, [{name: encode(value) for name, value in item.items()} for item in batch]
        )

    def pipeline(self) -> AbstractContextManager[object]:
        """Send the statements inside in one round trip, where the driver can."""
        return self._pipeline() if self._pipeline is not None else _NO_PIPELINE

    def _bind(self, query: Q, params: Mapping[str, object]) -> tuple[str, dict[str, object]]:
        encode = self._dialect.encode
        bound: dict[str, object] = {}
        lengths: dict[str, int] = {}
        for name, value in params.items():
            if isinstance(value, list | tuple):
                lengths[name] = len(value)
                bound.update((f"{name}_{i}", encode(item)) for i, item in enumerate(value))
            else:
                bound[name] = encode(value)
        return query.compile(self._dialect, lengths), bound


class _NoPipeline(AbstractContextManager[object]):
    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_PIPELINE = _NoPipeline()


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most ``size``, for list parameters with a bound."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def newest_first(
    select: str, *, at: str, key: str, equal: Mapping[str, object], limit: int,
    after: tuple[Any, Any] | None,
) -> tuple[Q, dict[str, object]]:
    """A page of ``select`` newest first by ``(at, key)``: the columns of ``equal`` whose
    value is not None must match, and with ``after`` (a page's last ``(at, key)``) only
    older rows come."""
    clauses: list[str] = []
    params: dict[str, object] = {"limit": limit}
    for column, value in equal.items():
        if value is not None:
            clauses.append(f"{column} = ${column}")
            params[column] = value
    if after is not None:
        clauses.append(f"({at}, {key}) < ($after_at, $after_key)")
        params.update(after_at=after[0], after_key=after[1])
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return Q(f"{select}{where} ORDER BY {at} DESC, {key} DESC LIMIT $limit"), params
