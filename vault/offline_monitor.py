"""``vault ledger monitor``: the check a witness or an auditor runs on a schedule.

The state file holds the last signed checkpoint that passed. Each run
fetches the service's latest checkpoint, opens it with the key, and checks
that it extends the saved one: a smaller tree is a rollback, the same size
with another root is a fork, a larger tree needs the consistency route's
proof. Only when every check passes is the state file replaced (a
temporary file in the same folder, fsynced, then renamed over it), so a
failed check or a network error leaves it as it was. A missing state file
is the first run: the latest checkpoint is saved once its signature checks.

Exit codes and lines are those of ``vault.offline``; a network failure or
an answer other than 200 is unusable input (exit 2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vault.adapters.ledger_client import LedgerClient
from vault.domain.errors import DependencyUnavailable
from vault.domain.note import Verifier
from vault.offline import (
    check_extends,
    invalid,
    open_signed,
    parse_consistency,
    read_text,
    unusable,
)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: written beside it, fsynced, renamed over it."""
    folder = path.parent
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise unusable(f"cannot write the state file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise unusable(f"cannot write the state file {path}: {exc.strerror or exc}") from None
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def monitor(client: LedgerClient, verifier: Verifier, state: Path) -> str:
    """Fetch, check and save the latest checkpoint; the success line, or ``CheckFailed``."""
    saved = read_text(state, "state file") if state.exists() else None
    old = None if saved is None else open_signed(saved, verifier, "saved checkpoint")
    try:
        latest = client.checkpoint()
        new = open_signed(latest, verifier, "latest checkpoint")
        if old is None:
            write_atomically(state, latest)
            return f"first run: {new.origin} size {new.size} saved"
        proof = None
        if new.size > old.size > 0:
            text = client.consistency(old.size, new.size)
            proof = parse_consistency(text, "the consistency route's answer")
    except DependencyUnavailable as exc:
        raise unusable(exc.detail) from None
    if new.size < old.size:
        raise invalid(f"rollback: latest size {new.size} is smaller than the saved size {old.size}")
    if new.size == old.size and new.root_hash != old.root_hash:
        raise invalid(f"fork: latest checkpoint has the saved size {new.size} but another root")
    check_extends(old, new, proof)
    write_atomically(state, latest)
    return f"ok: {new.origin} size {new.size} (was {old.size})"

