"""The embedded blob store: encrypted files under one folder.

Layout::

    root/objects/<key>    committed objects (keys look like ``documents/<uuid>``)
    root/tmp/*.part       objects being written, on the same filesystem

A writer streams into a temp file and ``commit`` flushes, fsyncs, renames it
into place with ``os.replace`` and fsyncs the folder, so an object is either
absent or complete. Each writer holds an ``flock`` on its temp file for its
whole life; ``clean_stale_tmp`` removes only temp files whose lock it can
take, which are those of writers that died, even when another process
shares the folder.

Format (AES-256-GCM, streaming, version 1)::

    header = b"DVB1" + salt (16 random bytes)
    frame* = AESGCM(object key).encrypt(nonce, plaintext, header + key)

The object key is HKDF-SHA256(master key, salt, info=b"document-vault blob v1").
Plaintext is cut into frames of 1 MiB; every frame but the last is full and
the last is shorter, possibly empty (an empty object, or one whose size is a
multiple of 1 MiB). A frame's nonce is its 11-byte big-endian index plus a
final-flag byte. Binding the index, the final flag and the object's key name
into each frame makes reordering, truncation, appending and moving an object
to another key all fail authentication.

Listing is ``local_listing.py``: a lazy walk of ``root/objects/<prefix>``.

Locks (retention and legal hold) are ``local_locks.py``: a sidecar per
object under ``root/locks``, which the store enforces itself: a locked
object is neither deleted nor replaced (``StorageLocked``). The time a
retention is compared with is the ``clock`` the store was built with.

Errors: reading raises only ``BlobUnreadable`` (missing, bad header, failed
tag, truncated, trailing bytes); writing, deleting, listing and ``ping``
raise ``BlobStoreUnavailable`` for OS failures (disk full, permissions).
The lock methods raise ``BlobUnreadable`` for a missing object.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.adapters.blobs.local_listing import list_pages
from vault.adapters.blobs.local_locks import LockBook
from vault.adapters.blobs.naming import check_key, check_page_size, check_prefix
from vault.adapters.blobs.signing import DownloadClaims, UrlSigner
from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import ObjectLock, Retention, StorageLocked
from vault.domain.models import utcnow
from vault.ports import LIST_PAGE_SIZE, StoredObject

MAGIC = b"DVB1"
SALT_SIZE = 16
HEADER_SIZE = len(MAGIC) + SALT_SIZE
FRAME_SIZE = 1024 * 1024
TAG_SIZE = 16
RECORD_SIZE = FRAME_SIZE + TAG_SIZE
HKDF_INFO = b"document-vault blob v1"
TMP_SUFFIX = ".part"

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
        self._master_key = master_key
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
                self._tmp, target, key, self._master_key,
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
        return _read_frames(self._path(key), key, self._master_key)

    def delete(self, key: str, version_id: str | None) -> None:
        """Remove the object and its lock record; ``StorageLocked`` while it is locked."""
        self._locks.delete(key, self._path(key))

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


class LocalBlobWriter:
    """One object being written: encrypts frame by frame, visible only after ``commit``.

    Memory: holds at most one frame of plaintext. After a failed ``write`` or
    ``commit`` the temp file is already gone; ``abort`` is always safe.
    """

    def __init__(
        self, tmp_dir: Path, target: Path, key: str, master_key: bytes,
        committing: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self._target = target
        self._committing = committing or contextlib.nullcontext
        file, self._tmp_path = _open_locked_tmp(tmp_dir)
        self._file: BinaryIO | None = file
        try:
            salt = os.urandom(SALT_SIZE)
            self._header = MAGIC + salt
            self._aad = self._header + key.encode("utf-8")
            self._aead = AESGCM(_object_key(master_key, salt))
            self._buffer = bytearray(FRAME_SIZE)
            self._filled = 0
            self._index = 0
            file.write(self._header)
        except BaseException:
            self._discard()
            raise

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._file is None:
            raise ValueError("write to a blob writer that is committed or aborted")
        view = memoryview(chunk).cast("B")
        try:
            if self._filled:
                take = min(FRAME_SIZE - self._filled, len(view))
                self._buffer[self._filled : self._filled + take] = view[:take]
                self._filled += take
                view = view[take:]
                if self._filled < FRAME_SIZE:
                    return
                self._emit(self._buffer, final=False)
                self._filled = 0
            while len(view) >= FRAME_SIZE:
                self._emit(view[:FRAME_SIZE], final=False)
                view = view[FRAME_SIZE:]
            if view:
                self._buffer[: len(view)] = view
                self._filled = len(view)
        except OSError as exc:
            self._discard()
            raise BlobStoreUnavailable(f"cannot write blob: {exc}") from exc

    def commit(self) -> str | None:
        file = self._file
        if file is None:
            raise ValueError("commit of a blob writer that is committed or aborted")
        replaced = False
        try:
            self._emit(memoryview(self._buffer)[: self._filled], final=True)
            file.flush()
            os.fsync(file.fileno())
            with self._committing():  # refuses a locked target, records the new lock
                created = make_private_dirs(self._target.parent)
                self._tmp_path.replace(self._target)
                replaced = True
                fsync_dir(self._target.parent)
                for folder in created:
                    fsync_dir(folder.parent)
        except StorageLocked:
            self._discard()
            raise
        except OSError as exc:
            if replaced:
                # Durability is unknown, so the caller is told the write failed:
                # the object must not outlive that answer.
                with contextlib.suppress(OSError):
                    self._target.unlink()
            self._discard()
            raise BlobStoreUnavailable(f"cannot store blob: {exc}") from exc
        self._file = None
        with contextlib.suppress(OSError):
            file.close()  # already flushed and fsynced; only the lock is released here
        return None

    def abort(self) -> None:
        self._discard()

    def _emit(self, plaintext: bytes | bytearray | memoryview, *, final: bool) -> None:
        assert self._file is not None
        nonce = self._index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
        self._file.write(self._aead.encrypt(nonce, plaintext, self._aad))
        self._index += 1

    def _discard(self) -> None:
        """Remove and close the temp file, once; never raises."""
        file, self._file = self._file, None
        if file is None:
            return
        # Unlink while still holding the lock, then close; a leftover (if the
        # unlink fails) is removed by the next ``clean_stale_tmp``.
        with contextlib.suppress(OSError):
            self._tmp_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            file.close()


def _open_locked_tmp(tmp_dir: Path) -> tuple[BinaryIO, Path]:
    """A new temp file under our exclusive lock, still linked in ``tmp_dir``."""
    while True:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="w-", suffix=TMP_SUFFIX)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return os.fdopen(fd, "wb"), Path(name)
        except BaseException:
            os.close(fd)
            Path(name).unlink(missing_ok=True)
            raise
        os.close(fd)  # a cleaner removed it before we locked it; take another


def _object_key(master_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(master_key)


def _read_frames(path: Path, key: str, master_key: bytes) -> Generator[bytes, None, None]:
    try:
        file = path.open("rb")
    except OSError as exc:
        raise BlobUnreadable(f"blob {key} cannot be opened: {exc}") from exc
    try:
        header = file.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or not header.startswith(MAGIC):
            raise BlobUnreadable(f"blob {key} has no valid header")
        aead = AESGCM(_object_key(master_key, header[len(MAGIC) :]))
        aad = header + key.encode("utf-8")
        record = bytearray(RECORD_SIZE)
        view = memoryview(record)
        index = 0
        while True:
            got = file.readinto(record)
            final = got < RECORD_SIZE
            if final and got < TAG_SIZE:
                raise BlobUnreadable(f"blob {key} is truncated")
            nonce = index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
            try:
                plaintext = aead.decrypt(nonce, view[:got], aad)
            except InvalidTag:
                raise BlobUnreadable(f"blob {key} fails its integrity check") from None
            if final:
                if file.read(1):
                    raise BlobUnreadable(f"blob {key} has bytes after its final frame")
                if plaintext:
                    yield plaintext
                return
            yield plaintext
            index += 1
    except OSError as exc:
        if isinstance(exc, BlobUnreadable):
            raise
        raise BlobUnreadable(f"blob {key} cannot be read: {exc}") from exc
    finally:
        file.close()
