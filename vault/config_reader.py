"""Typed reads of environment variables for ``vault.config``: each failure names its variable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import attrs

from vault.domain.cosignature import CosignerVerifier
from vault.domain.errors import ConfigError
from vault.domain.models import Role
from vault.domain.note import NoteError, is_valid_key_name

T = TypeVar("T")

DEFAULT_ALLOWED_MIME_TYPES: tuple[str, ...] = (
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "text/plain",
    "image/jpeg",
    "image/png",
)

_PRIVATE_KEY = re.compile(r"0x[0-9a-fA-F]{64}")
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL
)

def mask_url_password(url: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:****@h/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:****@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


@attrs.frozen
class WitnessSpec:
    """One witness the ledger submits its checkpoints to (``LEDGER_WITNESSES``)."""

    url: str
    """The witness's base URL; ``add-checkpoint`` is POSTed below it."""
    key: CosignerVerifier


class Reader:
    """Typed reads of environment variables, each failure naming its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return None
        return raw.strip()

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            raise ConfigError(name, f"expected {what}, got {raw!r}") from None

    def choice(
        self, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False
    ) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(name, f"expected one of {', '.join(allowed)}, got {raw!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)

        return self._parsed(name, default, parse, "true or false")

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self._parsed(name, default, int, "an integer")
        self._check_range(name, value, low, high)
        return value

    def optional_integer(self, name: str, *, low: int, high: int) -> int | None:
        value: int | None = self._parsed(name, None, int, "an integer")
        if value is not None:
            self._check_range(name, value, low, high)
        return value

    def key_name(self, name: str) -> str | None:
        """A signed-note key name: the log's origin (no spaces, no ``+``)."""
        raw = self.text(name)
        if raw is not None and not is_valid_key_name(raw):
            raise ConfigError(
                name, f"{raw!r} is not a valid key name (printable, no spaces or '+')"
            )
        return raw

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self._parsed(name, default, float, "a number")
        if value != value:  # NaN
            raise ConfigError(name, f"expected a number, got {value}")
        self._check_range(name, value, low, high)
        return value

    @staticmethod
    def _check_range(name: str, value: float, low: float, high: float | None) -> None:
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(name, f"must be {bounds}, got {value}")

    def url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(name, f"expected an http(s) URL, got {raw!r}")
        return raw

    def arn(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not raw.startswith("arn:"):
            raise ConfigError(name, f"expected an ARN (arn:…), got {raw!r}")
        return raw

    def database_url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        scheme = urlsplit(raw).scheme
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            return raw
        if scheme == "sqlite" and raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
            return raw
        raise ConfigError(
            name,
            "expected postgresql://…, postgresql+psycopg://… or sqlite:///path, got "
            f"{mask_url_password(raw)!r}",
        )

    def mime_types(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return DEFAULT_ALLOWED_MIME_TYPES
        items: list[Any]
        if raw.startswith("["):
            try:
                items = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(name, "not a valid JSON array") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ConfigError(name, "expected a JSON array of strings")
        else:
            items = raw.split(",")
        types = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
        if not types:
            raise ConfigError(name, "must list at least one MIME type")
        for mime in types:
            if "/" not in mime or " " in mime:
                raise ConfigError(name, f"{mime!r} is not a MIME type")
        return types

    def mock_roles(self, name: str) -> dict[UUID, Role]:
        raw = self.text(name)
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(name, 'expected a JSON object {"<actor uuid>": "<role>"}') from None
        if not isinstance(data, dict):
            raise ConfigError(name, 'expected a JSON object {"<actor uuid>": "<role>"}')
        roles: dict[UUID, Role] = {}
        for key, value in data.items():
            try:
                roles[UUID(key)] = Role(value)
            except (ValueError, TypeError):
                raise ConfigError(
                    name, f"entry {key!r}: {value!r} needs a UUID key and a known role"
                ) from None
        return roles

    def witnesses(self, name: str) -> tuple[WitnessSpec, ...]:
        """A JSON array of ``{"url", "key"}``: the witness's URL and its verifier key string."""
        raw = self.text(name)
        if raw is None:
            return ()
        shape = 'a JSON array of {"url": "<http(s) URL>", "key": "<witness verifier key>"}'
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(name, f"expected {shape}") from None
        if not isinstance(data, list) or not data:
            raise ConfigError(name, f"expected {shape}, with at least one witness")
        out: list[WitnessSpec] = []
        for n, item in enumerate(data):
            if not isinstance(item, dict) or set(item) != {"url", "key"}:
                raise ConfigError(name, f"entry {n}: expected {shape}")
            url, key = item["url"], item["key"]
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(name, f"entry {n}: url is not an http(s) URL: {url!r}")
            try:
                verifier = CosignerVerifier.parse(key) if isinstance(key, str) else None
            except NoteError as exc:
                raise ConfigError(name, f"entry {n}: key: {exc}") from None
            if verifier is None:
                raise ConfigError(name, f"entry {n}: key is not a verifier key string")
            if any(w.key.name == verifier.name for w in out):
                raise ConfigError(name, f"entry {n}: witness {verifier.name} is listed twice")
            out.append(WitnessSpec(url.rstrip("/"), verifier))
        return tuple(out)

    def certificates(self, name: str) -> tuple[bytes, ...]:
        """PEM certificates, inline or in the file the value names (one or more)."""
        raw = self.text(name)
        if raw is None:
            return ()
        if "-----BEGIN" in raw:
            pem = raw.replace("\\n", "\n").encode()
        else:
            try:
                pem = Path(raw).read_bytes()
            except OSError as exc:
                raise ConfigError(name, f"cannot read {raw}: {exc.strerror}") from None
        found = tuple(m.group(0) + b"\n" for m in _PEM_CERTIFICATE.finditer(pem))
        if not found:
            raise ConfigError(name, "expected PEM certificates (-----BEGIN CERTIFICATE-----)")
        return found

    def private_key(self, name: str) -> str | None:
        """A secp256k1 private key: 0x and 64 hex digits (never shown back)."""
        raw = self.text(name)
        if raw is not None and not _PRIVATE_KEY.fullmatch(raw):
            raise ConfigError(name, "expected 0x followed by 64 hex digits")
        return raw
