"""What a ``DATABASE_URL`` means to the PostgreSQL store.

``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` (the
SQLAlchemy spelling, whose ``+psycopg`` is dropped) are accepted, with
every libpq parameter they carry. Prepared statements are turned off
(``prepare_threshold=None``) on port 6543, Supabase's transaction pooler,
which cannot keep them across transactions; a ``prepare_threshold`` query
parameter (``none`` or a number) is consumed here and overrides that.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

CONNECT_TIMEOUT_SECONDS: Final = 3
"""libpq's ``connect_timeout`` unless the URL sets one."""

APPLICATION_NAME: Final = "document-vault"
"""What ``pg_stat_activity`` shows, unless the URL names the application."""

TRANSACTION_POOLER_PORT: Final = "6543"
"""Supabase's transaction pooler: no prepared statements there."""

_SCHEMES: Final = {
    "postgresql": "postgresql",
    "postgres": "postgres",
    "postgresql+psycopg": "postgresql",
}

_NUMBER: Final = re.compile(r"\d+")


@attrs.frozen
class ConnectionSettings:
    """What a database URL means to this store."""

    conninfo: str = attrs.field(repr=False)
    """libpq's ``key=value`` form, with this store's defaults filled in (and the password)."""
    prepare_threshold: int | None
    prepare_threshold_set: bool
    """False when psycopg's own default applies."""

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.Connection.connect`` (and so the pool)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        if self.prepare_threshold_set:
            kwargs["prepare_threshold"] = self.prepare_threshold
        return kwargs


def connection_settings(url: str) -> ConnectionSettings:
    """Parse a ``DATABASE_URL``; ``ValueError`` names what is wrong (never the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        shown = f"scheme {scheme.lower()!r}" if sep else "no scheme"
        raise ValueError(
            f"expected a postgresql://, postgres:// or postgresql+psycopg:// URL, got {shown}"
        )
    rest, threshold_text = _pop_query_parameter(rest, "prepare_threshold")
    libpq_url = f"{_SCHEMES[scheme.lower()]}://{rest}"
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.Error as exc:
        raise ValueError(f"not a valid PostgreSQL URL: {exc}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    params.setdefault("application_name", APPLICATION_NAME)

    threshold: int | None = None
    threshold_set = False
    ports = str(params.get("port") or "").split(",")
    if TRANSACTION_POOLER_PORT in (p.strip() for p in ports):
        threshold_set = True
    if threshold_text is not None:
        threshold = _parse_prepare_threshold(threshold_text)
        threshold_set = True
    return ConnectionSettings(
        conninfo=make_conninfo("", **params),
        prepare_threshold=threshold,
        prepare_threshold_set=threshold_set,
    )


def _pop_query_parameter(rest: str, name: str) -> tuple[str, str | None]:
    """Remove ``name`` from a URL's query, keeping every other byte as it was.

    The last occurrence wins, as in libpq.
    """
    base, sep, query = rest.partition("?")
    if not sep:
        return rest, None
    kept: list[str] = []
    value: str | None = None
    for item in query.split("&"):
        key, _, raw = item.partition("=")
        if unquote(key) == name:
            value = unquote(raw)
        elif item:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), value


def _parse_prepare_threshold(text: str) -> int | None:
    value = text.strip()
    if value.lower() == "none":
        return None
    if _NUMBER.fullmatch(value):
        return int(value)
    raise ValueError(f"prepare_threshold must be 'none' or a whole number, got {text!r}")
