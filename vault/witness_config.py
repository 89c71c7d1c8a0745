"""The configuration of ``vault witness``: our own c2sp.org/tlog-witness.

Read from the environment by the ``witness`` commands only (``Settings``
knows nothing of it), and parsed here from any mapping, without I/O:

* ``WITNESS_LOGS`` (required): a JSON array of the log verifier key strings
  the witness trusts (what ``vault ledger key`` prints). A log's key name is
  its origin, so the keys are grouped by name;
* ``WITNESS_NAME`` (``vault-witness``): the name of the witness's key;
* ``WITNESS_KEY_FILE`` (``./var/witness/witness.key``): the witness's
  ``PRIVATE+KEY+…`` string, made on first start with mode 0600;
* ``WITNESS_DB`` (``./var/witness/witness.sqlite3``): the last cosigned
  size and root hash per origin;
* ``WITNESS_HOST`` / ``WITNESS_PORT`` (``127.0.0.1`` / ``8181``): where
  ``vault witness serve`` listens.

A bad value is a ``ConfigError`` naming its variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import attrs

from vault.domain.errors import ConfigError
from vault.domain.note import NoteError, Verifier, is_valid_key_name

DEFAULT_NAME = "vault-witness"
DEFAULT_KEY_FILE = Path("var/witness/witness.key")
DEFAULT_DB = Path("var/witness/witness.sqlite3")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8181


@attrs.frozen
class WitnessSettings:
    """What ``vault witness serve`` and ``vault witness key`` run with."""

    logs: Mapping[str, tuple[Verifier, ...]]
    """The trusted log keys, by origin (each key's name)."""
    name: str = DEFAULT_NAME
    key_file: Path = DEFAULT_KEY_FILE
    db: Path = DEFAULT_DB
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WitnessSettings:
        name = env.get("WITNESS_NAME", DEFAULT_NAME)
        if not is_valid_key_name(name):
            raise ConfigError("WITNESS_NAME", "must be non-empty, without '+' or spaces")
        return cls(
            logs=parse_logs(env.get("WITNESS_LOGS")),
            name=name,
            key_file=_path(env, "WITNESS_KEY_FILE", DEFAULT_KEY_FILE),
            db=_path(env, "WITNESS_DB", DEFAULT_DB),
            host=_host(env.get("WITNESS_HOST", DEFAULT_HOST)),
            port=_port(env.get("WITNESS_PORT", str(DEFAULT_PORT))),
        )


def parse_logs(raw: str | None) -> dict[str, tuple[Verifier, ...]]:
    """``WITNESS_LOGS``: a non-empty JSON array of distinct verifier key strings."""
    variable = "WITNESS_LOGS"
    if raw is None or not raw.strip():
        raise ConfigError(variable, "is required: a JSON array of log verifier keys")
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(variable, "is not valid JSON") from None
    if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
        raise ConfigError(variable, "must be a non-empty JSON array of verifier key strings")
    logs: dict[str, list[Verifier]] = {}
    for position, text in enumerate(value):
        try:
            verifier = Verifier.parse(text)
        except NoteError as exc:
            raise ConfigError(variable, f"key {position} is not a verifier key: {exc}") from None
        known = logs.setdefault(verifier.name, [])
        if any(k.key_id == verifier.key_id for k in known):
            raise ConfigError(variable, f"key {position} repeats a name and key id")
        known.append(verifier)
    return {origin: tuple(keys) for origin, keys in logs.items()}


def _path(env: Mapping[str, str], variable: str, default: Path) -> Path:
    raw = env.get(variable)
    if raw is None:
        return default
    if not raw.strip():
        raise ConfigError(variable, "must be a file path")
    return Path(raw)


def _host(raw: str) -> str:
    if not raw.strip() or raw.strip() != raw:
        raise ConfigError("WITNESS_HOST", "must be a host name or address")
    return raw


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError("WITNESS_PORT", f"must be a port number in 1..65535, got {raw!r}")
    return int(raw)
