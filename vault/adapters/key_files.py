"""The embedded store's master key: one binary file, created on first start.

Creation is atomic and race-free: the key is written to a private temp file
beside its final name, fsynced, then hard-linked into place. ``os.link``
refuses to replace an existing file, so when two processes start together
exactly one key wins and both read it back.

Errors: a key file of the wrong length, or a folder the key cannot be read
from or written to, is a ``ConfigError`` naming ``VAULT_DATA_DIR``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.errors import ConfigError

_VARIABLE = "VAULT_DATA_DIR"


def load_or_create_key(path: Path, size: int = 32) -> bytes:
    """The key stored at ``path``, creating it (mode 0600) if it does not exist."""
    try:
        return _read_key(path, size)
    except FileNotFoundError:
        pass
    try:
        for created in make_private_dirs(path.parent):
            fsync_dir(created.parent)
        _publish_new_key(path, size)
        return _read_key(path, size)
    except OSError as exc:
        raise ConfigError(_VARIABLE, f"cannot create key file {path}: {exc.strerror}") from exc


def _read_key(path: Path, size: int) -> bytes:
    """Read the key; FileNotFoundError passes through, other failures are ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(_VARIABLE, f"cannot read key file {path}: {exc.strerror}") from exc
    if len(data) != size:
        raise ConfigError(_VARIABLE, f"key file {path} holds {len(data)} bytes, expected {size}")
    return data


def _publish_new_key(path: Path, size: int) -> None:
    """Write a fresh key under a temp name and link it to ``path`` unless one exists."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(secrets.token_bytes(size))
            tmp.flush()
            os.fsync(tmp.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return  # another process won the race; its key is the key
        fsync_dir(path.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
