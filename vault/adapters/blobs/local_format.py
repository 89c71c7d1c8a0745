"""The embedded blob store's file format: headers, frames, and the data keys kept apart.

Version 2 (every new object)::

    object file  = b"DVB2" + key_id (16 random bytes) + frame*
    root/keys/<key_id hex> = b"DVK1" + nonce (12 random bytes)
                             + AESGCM(KEK).encrypt(nonce, data key, b"DVK1" + key_id + key)
    KEK          = HKDF-SHA256(master key, salt=None, info=b"document-vault data key v1")

The data key is 32 random bytes made for that object alone. Keeping it
outside the object file is what lets the store shred an object: once its
key file is gone, no copy of the object file (a backup, a snapshot, a
disk) can be decrypted, with the master key or without. The key file binds
its key id and the object's key name, so it unwraps for that object only.

Version 1 (objects written before; read, never written)::

    object file  = b"DVB1" + salt (16 random bytes) + frame*
    frame key    = HKDF-SHA256(master key, salt, info=b"document-vault blob v1")

Such an object has no separate key: the master key alone reads any copy of it.

Frames are the same in both (AES-256-GCM, streaming)::

    frame* = AESGCM(frame key).encrypt(nonce, plaintext, header + key)

Plaintext is cut into frames of 1 MiB; every frame but the last is full and
the last is shorter, possibly empty (an empty object, or one whose size is a
multiple of 1 MiB). A frame's nonce is its 11-byte big-endian index plus a
final-flag byte. Binding the index, the final flag and the object's key name
into each frame makes reordering, truncation, appending and moving an object
to another key all fail authentication.

A key file is written before its object exists (when the writer opens):
through a locked temp file under ``root/tmp`` (so ``clean_stale_tmp`` treats
it as any writer's), fsynced, renamed into ``root/keys`` and that folder
fsynced. A writer that aborts or fails removes it; a process killed while
writing leaves it behind, wrapping a key of bytes that were never committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import BinaryIO

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.adapters.folders import fsync_dir, make_private_dirs
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import StorageLocked

log = structlog.get_logger("vault.blobs")

MAGIC_V1 = b"DVB1"
MAGIC = b"DVB2"
SALT_SIZE = 16
KEY_ID_SIZE = 16
HEADER_SIZE = len(MAGIC) + KEY_ID_SIZE
"""Both versions: magic and 16 bytes (salt in v1, key id in v2)."""
FRAME_SIZE = 1024 * 1024
TAG_SIZE = 16
RECORD_SIZE = FRAME_SIZE + TAG_SIZE
HKDF_INFO = b"document-vault blob v1"
KEK_INFO = b"document-vault data key v1"
KEY_MAGIC = b"DVK1"
NONCE_SIZE = 12
DATA_KEY_SIZE = 32
KEY_FILE_SIZE = len(KEY_MAGIC) + NONCE_SIZE + DATA_KEY_SIZE + TAG_SIZE
TMP_SUFFIX = ".part"
KEYS = "keys"


class KeyRing:
    """The data keys of one store, under ``root/keys``, wrapped under the master key."""

    def __init__(self, root: Path, master_key: bytes) -> None:
        self.folder = root / KEYS
        self._tmp = root / "tmp"
        self._master_key = master_key
        self._kek = AESGCM(_derive(master_key, None, KEK_INFO))

    def path(self, key_id: bytes) -> Path:
        return self.folder / key_id.hex()

    def create(self, key_id: bytes, key: str, data_key: bytes) -> Path:
        """Write the key file of ``key_id`` durably; returns its path (``OSError`` on failure)."""
        nonce = os.urandom(NONCE_SIZE)
        body = KEY_MAGIC + nonce + self._kek.encrypt(nonce, data_key, _key_aad(key_id, key))
        make_private_dirs(self._tmp)
        created = make_private_dirs(self.folder)
        file, tmp_path = open_locked_tmp(self._tmp, prefix="k-")
        path = self.path(key_id)
        try:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
            tmp_path.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)
            file.close()
            raise
        file.close()
        try:
            fsync_dir(self.folder)
            for folder in created:
                fsync_dir(folder.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            raise
        return path

    def frame_key(self, header: bytes, key: str) -> bytes:
        """The frame key of an object with this (valid) header; ``BlobUnreadable`` if lost."""
        if header.startswith(MAGIC_V1):
            return _derive(self._master_key, header[len(MAGIC_V1) :], HKDF_INFO)
        key_id = header[len(MAGIC) :]
        try:
            body = self.path(key_id).read_bytes()
        except FileNotFoundError:
            raise BlobUnreadable(f"blob {key}: its data key is gone (destroyed or lost)") from None
        except OSError as exc:
            raise BlobUnreadable(f"blob {key}: its data key cannot be read: {exc}") from exc
        if len(body) != KEY_FILE_SIZE or not body.startswith(KEY_MAGIC):
            raise BlobUnreadable(f"blob {key}: its data key is damaged")
        nonce = body[len(KEY_MAGIC) : len(KEY_MAGIC) + NONCE_SIZE]
        try:
            return self._kek.decrypt(
                nonce, body[len(KEY_MAGIC) + NONCE_SIZE :], _key_aad(key_id, key)
            )
        except InvalidTag:
            raise BlobUnreadable(f"blob {key}: its data key is damaged") from None

    def remove(self, key_id: bytes) -> None:
        """Delete the key file of ``key_id``, durably; absent is fine (``OSError`` on failure)."""
        path = self.path(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.folder)


def key_id_of(path: Path) -> bytes | None:
    """The key id in the header of the object file at ``path``; None for a v1 object, a
    file too short or not of this format, or no file (``OSError`` if it cannot be read)."""
    try:
        with path.open("rb") as file:
            header = file.read(HEADER_SIZE)
    except (FileNotFoundError, IsADirectoryError):
        return None
    if len(header) != HEADER_SIZE or not header.startswith(MAGIC):
        return None
    return header[len(MAGIC) :]


def _derive(master_key: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master_key)


def _key_aad(key_id: bytes, key: str) -> bytes:
    return KEY_MAGIC + key_id + key.encode("utf-8")


class LocalBlobWriter:
    """One object being written: encrypts frame by frame, visible only after ``commit``.

    Memory: holds at most one frame of plaintext. The object's key file is
    written when the writer opens. After a failed ``write`` or ``commit`` the
    temp file and the key file are already gone; ``abort`` is always safe.
    A commit that replaces a v2 object removes that object's key file once
    the replacement is durable.
    """

    def __init__(
        self,
        tmp_dir: Path,
        target: Path,
        key: str,
        ring: KeyRing,
        committing: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self._target = target
        self._key = key
        self._ring = ring
        self._committing = committing or contextlib.nullcontext
        self._key_path: Path | None = None
        file, self._tmp_path = open_locked_tmp(tmp_dir)
        self._file: BinaryIO | None = file
        try:
            key_id = os.urandom(KEY_ID_SIZE)
            data_key = os.urandom(DATA_KEY_SIZE)
            self._key_path = ring.create(key_id, key, data_key)
            self._header = MAGIC + key_id
            self._aad = self._header + key.encode("utf-8")
            self._aead = AESGCM(data_key)
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
        old_key_id: bytes | None = None
        try:
            self._emit(memoryview(self._buffer)[: self._filled], final=True)
            file.flush()
            os.fsync(file.fileno())
            with self._committing():  # refuses a locked target, records the new lock
                old_key_id = key_id_of(self._target)  # under the mutex: no one else replaces it
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
                # the object must not outlive that answer (nor the one it replaced).
                with contextlib.suppress(OSError):
                    self._target.unlink()
                self._forget_old_key(old_key_id)
            self._discard()
            raise BlobStoreUnavailable(f"cannot store blob: {exc}") from exc
        self._file = None
        self._key_path = None  # it is the committed object's now
        with contextlib.suppress(OSError):
            file.close()  # already flushed and fsynced; only the lock is released here
        self._forget_old_key(old_key_id)
        return None

    def abort(self) -> None:
        self._discard()

    def _forget_old_key(self, key_id: bytes | None) -> None:
        """Remove the replaced object's key file; a failure leaves it, logged (never raises)."""
        if key_id is None:
            return
        try:
            self._ring.remove(key_id)
        except OSError as exc:
            log.warning(
                "blob_old_key_not_removed", key=self._key, key_id=key_id.hex(), error=str(exc)
            )

    def _emit(self, plaintext: bytes | bytearray | memoryview, *, final: bool) -> None:
        assert self._file is not None
        nonce = self._index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
        self._file.write(self._aead.encrypt(nonce, plaintext, self._aad))
        self._index += 1

    def _discard(self) -> None:
        """Remove and close the temp file and remove the key file, once; never raises."""
        file, self._file = self._file, None
        key_path, self._key_path = self._key_path, None
        if key_path is not None:
            with contextlib.suppress(OSError):
                key_path.unlink(missing_ok=True)
        if file is None:
            return
        # Unlink while still holding the lock, then close; a leftover (if the
        # unlink fails) is removed by the next ``clean_stale_tmp``.
        with contextlib.suppress(OSError):
            self._tmp_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            file.close()


def open_locked_tmp(tmp_dir: Path, prefix: str = "w-") -> tuple[BinaryIO, Path]:
    """A new temp file under our exclusive lock, still linked in ``tmp_dir``."""
    while True:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=prefix, suffix=TMP_SUFFIX)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return os.fdopen(fd, "wb"), Path(name)
        except BaseException:
            os.close(fd)
            Path(name).unlink(missing_ok=True)
            raise
        os.close(fd)  # a cleaner removed it before we locked it; take another


def read_frames(path: Path, key: str, ring: KeyRing) -> Generator[bytes, None, None]:
    """Decrypted frames of the object file at ``path``; only ever ``BlobUnreadable``."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise BlobUnreadable(f"blob {key} cannot be opened: {exc}") from exc
    try:
        header = file.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or header[: len(MAGIC)] not in (MAGIC, MAGIC_V1):
            raise BlobUnreadable(f"blob {key} has no valid header")
        aead = AESGCM(ring.frame_key(header, key))
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
