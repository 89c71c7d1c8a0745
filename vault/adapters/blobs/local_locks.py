"""Retention locks and legal holds of the embedded blob store, one sidecar per object.

Layout::

    root/locks/<key>.json   {"mode": "compliance"|"governance"|null,
                             "retain_until": ISO 8601 UTC|null, "legal_hold": bool}
    root/locks.mutex        flock'ed around every change of a lock or of a locked key

A sidecar is outside ``objects/``, so a listing never sees one. It is
written atomically: a temp file in the sidecar's own folder, fsynced, moved
into place with ``os.replace``, and the folder fsynced (with any folder
created on the way). A missing sidecar means no lock; a sidecar left for an
object that is gone (a crash between the two unlinks of a delete) binds
nothing, since a lock only counts while its object exists, and the next
commit of that key replaces or removes it. A sidecar that cannot be read
or parsed is ``BlobStoreUnavailable``: the store fails closed and deletes
nothing.

Every read-modify-write of a lock, every delete and the final step of every
commit hold an exclusive ``flock`` on ``locks.mutex``, so two threads or two
processes sharing the folder never interleave them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import LockMode, ObjectLock, Retention, StorageLocked, stronger

LOCKS = "locks"
MUTEX = "locks.mutex"
SUFFIX = ".json"


class LockBook:
    """The sidecars of one store's objects, and the mutex that orders their changes."""

    def __init__(self, root: Path, clock: Callable[[], datetime]) -> None:
        self._folder = root / LOCKS
        self._mutex = root / MUTEX
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's lock mutex (``BlobStoreUnavailable`` if it cannot be taken)."""
        try:
            make_private_dirs(self._mutex.parent)
            fd = os.open(self._mutex, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot open {self._mutex}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def state(self, key: str, target: Path) -> ObjectLock:
        """The lock of the object at ``target``; ``BlobUnreadable`` when it is not there."""
        if not _exists(target, key):
            raise BlobUnreadable(f"blob {key} is missing")
        return self.recorded(key)

    def recorded(self, key: str) -> ObjectLock:
        """What the sidecar of ``key`` says (unlocked when there is none)."""
        path = self._sidecar(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ObjectLock.unlocked()
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read the lock of {key}: {exc}") from exc
        try:
            return _parse(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise BlobStoreUnavailable(f"the lock record of {key} is damaged: {exc}") from exc

    def refuse_if_locked(self, key: str, target: Path, doing: str) -> None:
        """``StorageLocked`` when an object is at ``target`` and its lock blocks deletion."""
        if not _exists(target, key):
            return
        lock = self.recorded(key)
        if lock.blocks_deletion(self.now()):
            raise StorageLocked(f"cannot {doing} {key}: {_describe(lock)}")

    @contextlib.contextmanager
    def committing(
        self, key: str, target: Path, retention: Retention | None
    ) -> Iterator[None]:
        """Around the rename of a new object into ``target``: refuse, then record its lock.

        Under the mutex: refuses (``StorageLocked``) while the object there is
        locked; after the body of the ``with`` (the rename) succeeds, the
        sidecar is written with ``retention``, or removed when there is none
        (a new object starts with no hold). An ``OSError`` recording it
        propagates, and the caller removes the object it just renamed.
        """
        with self.exclusive():
            self.refuse_if_locked(key, target, "replace")
            yield
            if retention is None:
                self.forget(key)
            else:
                self.save(key, ObjectLock(None, retention.mode, retention.retain_until, False))

    def extend(self, key: str, target: Path, retention: Retention) -> ObjectLock:
        """Make the retention ``stronger``; the sidecar is written only if it changes."""
        with self.exclusive():
            current = self.state(key, target)
            wanted = stronger(current.retention, retention)
            if wanted == current.retention:
                return current
            changed = attrs.evolve(current, mode=wanted.mode, retain_until=wanted.retain_until)
            return self._record(key, changed)

    def set_hold(self, key: str, target: Path, on: bool) -> ObjectLock:
        with self.exclusive():
            current = self.state(key, target)
            if current.legal_hold == on:
                return current
            return self._record(key, attrs.evolve(current, legal_hold=on))

    def delete(self, key: str, target: Path) -> None:
        """Remove the object at ``target``, then its sidecar; ``StorageLocked`` while locked."""
        with self.exclusive():
            self.refuse_if_locked(key, target, "delete")
            try:
                target.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise BlobStoreUnavailable(f"cannot delete {key}: {exc}") from exc
            try:
                self.forget(key)
            except OSError as exc:
                raise BlobStoreUnavailable(f"deleted {key} but not its lock: {exc}") from exc

    def _record(self, key: str, lock: ObjectLock) -> ObjectLock:
        try:
            self.save(key, lock)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot record the lock of {key}: {exc}") from exc
        return lock

    def save(self, key: str, lock: ObjectLock) -> None:
        """Write the sidecar of ``key`` atomically and durably (``OSError`` on failure)."""
        until = lock.retain_until
        body = json.dumps(
            {
                "mode": None if lock.mode is None else lock.mode.value,
                "retain_until": None if until is None else until.isoformat(),
                "legal_hold": lock.legal_hold,
            },
            sort_keys=True,
        ).encode("utf-8")
        _write_atomically(self._sidecar(key), body)

    def forget(self, key: str) -> None:
        """Remove the sidecar of ``key``, if any (``OSError`` on failure)."""
        path = self._sidecar(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def _sidecar(self, key: str) -> Path:
        return self._folder / (key + SUFFIX)


def _exists(target: Path, key: str) -> bool:
    try:
        return target.is_file()
    except OSError as exc:
        raise BlobStoreUnavailable(f"cannot look at {key}: {exc}") from exc


def _parse(data: dict[str, Any]) -> ObjectLock:
    mode = data["mode"]
    until = data["retain_until"]
    hold = data["legal_hold"]
    if not isinstance(hold, bool) or (mode is None) != (until is None):
        raise ValueError(f"not a lock record: {data!r}")
    return ObjectLock(
        version_id=None,
        mode=None if mode is None else LockMode(mode),
        retain_until=None if until is None else datetime.fromisoformat(until),
        legal_hold=hold,
    )


def _describe(lock: ObjectLock) -> str:
    if lock.legal_hold:
        return "it is under a legal hold"
    return f"it is retained ({lock.mode}) until {lock.retain_until}"


def _write_atomically(path: Path, body: bytes) -> None:
    created = make_private_dirs(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".lock-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        Path(name).replace(path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    for folder in created:
        fsync_dir(folder.parent)
