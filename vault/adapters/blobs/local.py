"""The embedded blob store: encrypted files under one folder.

Layout::

    root/objects/<key>      committed objects (keys look like ``documents/<uuid>``)
    root/keys/<key id hex>  each object's data key, wrapped under the master key
    root/tmp/*.part         objects and key files being written, on the same filesystem

A writer streams into a temp file and ``commit`` flushes, fsyncs, renames it
into place with ``os.replace`` and fsyncs the folder, so an object is either
absent or complete. Each writer holds an ``flock`` on its temp file for its
whole life; ``clean_stale_tmp`` removes only temp files whose lock it can
take, which are those of writers that died, even when another process
shares the folder.

Format (``local_format.py``; AES-256-GCM in 1 MiB frames bound to the key
name), version 2::

    object file = b"DVB2" + key_id (16 random bytes) + frame*
    key file    = root/keys/<key_id hex>: the object's own random data key,
                  wrapped under a key derived from the master key

The key file is written durably before its object is committed, and
removed when the object is replaced or destroyed. ``destroy`` deletes it
first: from then on no copy of the object file, wherever it was kept, can
be decrypted, even with the master key (crypto-shredding). Objects written
before this release are version 1 (``b"DVB1" + salt``, the frame key derived
from the master key and that salt): they still read, but having no separate
key they can only be deleted, not shredded; a copy of one stays readable.

Listing is ``local_listing.py``: a lazy walk of ``root/objects/<prefix>``.

Locks (retention and legal hold) are ``local_locks.py``: a sidecar per
object under ``root/locks``, which the store enforces itself: a locked
object is neither deleted, destroyed nor replaced (``StorageLocked``). The
time a retention is compared with is the ``clock`` the store was built with.

Errors: reading raises only ``BlobUnreadable`` (missing, bad header, failed
tag, truncated, trailing bytes, a data key gone or damaged); writing,
deleting, destroying, listing and ``ping`` raise ``BlobStoreUnavailable``
for OS failures (disk full, permissions). The lock methods raise
``BlobUnreadable`` for a missing object.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path
from uuid import UUID

from vault.adapters.blobs.local_format import (
    FRAME_SIZE,
    HEADER_SIZE,
    RECORD_SIZE,
    TAG_SIZE,
    TMP_SUFFIX,
    KeyRing,
    LocalBlobWriter,
    key_id_of,
    read_frames,
)
from vault.adapters.blobs.local_listing import list_pages
from vault.adapters.blobs.local_locks import LockBook
from vault.adapters.blobs.naming import check_key, check_page_size, check_prefix
from vault.adapters.blobs.signing import DownloadClaims, UrlSigner
from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import ObjectLock, Retention, StoredVersion
from vault.domain.models import utcnow
from vault.ports import LIST_PAGE_SIZE, StoredObject

__all__ = [
    "FRAME_SIZE",
    "HEADER_SIZE",
    "RECORD_SIZE",
    "TAG_SIZE",
    "TMP_SUFFIX",
    "LocalBlobStore",
    "LocalBlobWriter",
    "clean_stale_tmp",
]

_OBJECTS = "objects"
_TMP = "tmp"


class LocalBlobStore:
    """``BlobStore`` on the local filesystem, encrypted at rest with one master key."""

    bucket = "local"

    def __init__(
        self,
        root: Path,
        master_key: bytes,
        signer: UrlSigner,
        public_base_url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self.root = root
        self._objects = root / _OBJECTS
        self._tmp = root / _TMP
        self._ring = KeyRing(root, master_key)
        self._signer = signer
        self._public_base_url = public_base_url.rstrip("/")
        self._locks = LockBook(root, clock)

    def ping(self) -> None:
        try:
            make_private_dirs(self._tmp)
            make_private_dirs(self._objects)
            fd, probe = tempfile.mkstemp(dir=self._tmp, prefix="ping-", suffix=".probe")
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
                Path(probe).unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob folder {self.root} is not writable: {exc}") from exc

    def clean_stale_tmp(self) -> int:
        """Remove temp files left by writers that died; returns how many."""
        return clean_stale_tmp(self.root)

    def open_writer(self, key: str, retention: Retention | None = None) -> LocalBlobWriter:
        """A writer of ``key``; ``StorageLocked`` if the object there is locked (see
        ``LockBook.committing`` for what ``commit`` checks and records)."""
        target = self._path(key)
        self._locks.refuse_if_locked(key, target, "replace")
        try:
            make_private_dirs(self._tmp)
            return LocalBlobWriter(
                self._tmp,
                target,
                key,
                self._ring,
                lambda: self._locks.committing(key, target, retention),
            )
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot start writing {key}: {exc}") from exc

    def object_lock_enabled(self) -> bool:
        return True  # this store enforces its locks itself

    def lock_state(self, key: str, version_id: str | None) -> ObjectLock:
        """The object's lock; ``version_id`` is ignored (no versions here)."""
        return self._locks.state(key, self._path(key))

    def extend_retention(
        self, key: str, version_id: str | None, retention: Retention
    ) -> ObjectLock:
        return self._locks.extend(key, self._path(key), retention)

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> ObjectLock:
        return self._locks.set_hold(key, self._path(key), on)

    def read(self, key: str, version_id: str | None) -> Generator[bytes, None, None]:
        """Decrypted frames of the object; ``version_id`` is ignored (no versions here).

        The file is opened on the first ``next`` and closed when the
        iterator is exhausted or closed.
        """
        return read_frames(self._path(key), key, self._ring)

    def delete(self, key: str, version_id: str | None) -> None:
        """Remove the object, its data key and its lock record (as ``destroy``: a write
        whose record failed leaves no key behind); ``StorageLocked`` while it is locked."""
        self.destroy(key)

    def versioning_enabled(self) -> bool:
        return True  # a locked object is never replaced, so nothing locked is ever lost

    def stored_versions(self, key: str) -> list[StoredVersion]:
        """The one file of ``key`` with its lock, or ``[]`` when there is none."""
        try:
            lock = self.lock_state(key, None)
        except BlobUnreadable:
            return []
        return [StoredVersion(version_id=None, delete_marker=False, lock=lock)]

    def destroy(self, key: str) -> list[StoredVersion]:
        """Shred ``key``: its data key, then its file, then its lock record, durably.

        Under the lock mutex, and refused (``StorageLocked``, nothing deleted)
        while its lock blocks deletion. Deleting the data key first means a
        failure after it leaves a file nobody can decrypt; repeating the call
        finishes the job. A v1 object has no data key: its file is deleted,
        but a copy of it stays readable with the master key.
        """
        target = self._path(key)
        with self._locks.exclusive():
            listed = self.stored_versions(key)
            if not listed:
                if target.exists() or target.is_symlink():  # a folder where a file belongs
                    raise BlobStoreUnavailable(f"cannot delete {key}: it is not an object file")
                return []
            self._locks.refuse_if_locked(key, target, "destroy")
            try:
                key_id = key_id_of(target)
                if key_id is not None:
                    self._ring.remove(key_id)
            except OSError as exc:
                raise BlobStoreUnavailable(f"cannot destroy the data key of {key}: {exc}") from exc
            try:
                target.unlink(missing_ok=True)
                fsync_dir(target.parent)
                self._locks.forget(key)
            except OSError as exc:
                raise BlobStoreUnavailable(
                    f"destroyed the data key of {key} but not all its files: {exc}"
                ) from exc
        return listed

    def list_objects(
        self, prefix: str, *, page_size: int = LIST_PAGE_SIZE
    ) -> Generator[list[StoredObject], None, None]:
        """Committed objects under ``prefix``, a page at a time (see ``BlobStore``).

        Nothing is read until the first ``next``; the folders are closed when
        the listing is exhausted, fails or is closed.
        """
        check_prefix(prefix)
        check_page_size(page_size)
        return list_pages(self._objects / prefix, prefix, page_size)

    def presign(
        self,
        key: str,
        version_id: str | None,
        *,
        filename: str,
        mime_type: str,
        expires_in: int,
        document_id: UUID,
    ) -> str:
        self._path(key)
        claims = DownloadClaims(
            document_id=document_id,
            key=key,
            version_id=version_id,
            filename=filename,
            mime_type=mime_type,
            expires_at=int(time.time()) + expires_in,
        )
        return f"{self._public_base_url}/api/v1/blobs/{self._signer.sign(claims)}"

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._objects / key


def clean_stale_tmp(root: Path) -> int:
    """Remove temp files under ``root/tmp`` that no live writer holds; returns how many.

    Safe while other writers run, in this process or another: a live
    writer's file is locked, and a writer re-creates its file if it finds
    it was removed before it could take the lock.
    """
    tmp = root / _TMP
    try:
        paths = list(tmp.iterdir())
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise BlobStoreUnavailable(f"cannot list {tmp}: {exc}") from exc
    removed = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # vanished, a symlink, or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            removed += 1
        except OSError:
            continue  # held by a live writer, already gone, or a folder
        finally:
            os.close(fd)
    return removed
