"""What only the embedded blob store does: frames, encryption at rest, tamper detection,
crash-safe writes and temp-file cleanup, its own URLs.

What every blob store promises (round trips, visibility, abort, delete, ping, key
checks) is asserted for this store too, by ``test_blob_contract.py``.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.vault.blob_helpers import BASE_URL, KEY, MASTER_KEY, SIGNING_SECRET, MiB, payload
from vault.adapters.blobs.local import (
    FRAME_SIZE,
    HEADER_SIZE,
    RECORD_SIZE,
    TAG_SIZE,
    LocalBlobStore,
    clean_stale_tmp,
)
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return _store(tmp_path)


def _store(root: Path, master_key: bytes = MASTER_KEY) -> LocalBlobStore:
    return LocalBlobStore(root, master_key, UrlSigner(SIGNING_SECRET), BASE_URL + "/")


def _put(store: LocalBlobStore, key: str, data: bytes, chunk: int = 64 * 1024) -> None:
    writer = store.open_writer(key)
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        writer.write(view[start : start + chunk].tobytes())
    assert writer.commit() is None


def _get(store: LocalBlobStore, key: str) -> bytes:
    return b"".join(store.read(key, None))


def _object(root: Path, key: str = KEY) -> Path:
    return root / "objects" / key


def _tmp_files(root: Path) -> list[Path]:
    tmp = root / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def _object_files(root: Path) -> list[Path]:
    objects = root / "objects"
    return sorted(p for p in objects.rglob("*") if p.is_file()) if objects.exists() else []


def _frame_offset(index: int) -> int:
    return HEADER_SIZE + index * RECORD_SIZE


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


class TestRoundTrip:
    @pytest.mark.parametrize(
        "size",
        [0, 1, FRAME_SIZE - 1, FRAME_SIZE, FRAME_SIZE + 1, 2 * FRAME_SIZE, 3 * MiB + MiB // 2],
        ids=["0B", "1B", "1MiB-1", "1MiB", "1MiB+1", "2MiB", "3.5MiB"],
    )
    def test_bytes_come_back_unchanged(self, store: LocalBlobStore, size: int) -> None:
        """What was committed is what is read, for sizes around frame boundaries."""
        data = payload(size)

        _put(store, KEY, data)

        assert _get(store, KEY) == data

    @pytest.mark.parametrize("chunk", [1, 7, 4096, FRAME_SIZE - 3, FRAME_SIZE, 3 * FRAME_SIZE])
    def test_chunking_of_writes_does_not_matter(self, store: LocalBlobStore, chunk: int) -> None:
        """Any split of the input gives the same plaintext back."""
        size = 2 * FRAME_SIZE + 5 if chunk > 1 else FRAME_SIZE + 5
        data = payload(size)

        _put(store, KEY, data, chunk=chunk)

        assert _get(store, KEY) == data

    def test_reads_yield_whole_frames(self, store: LocalBlobStore) -> None:
        """Reading yields at most one frame per chunk and never an empty chunk."""
        _put(store, KEY, payload(2 * FRAME_SIZE + 10))

        sizes = [len(chunk) for chunk in store.read(KEY, None)]

        assert sizes == [FRAME_SIZE, FRAME_SIZE, 10]

    def test_on_disk_size_is_plaintext_plus_fixed_overhead(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """The file is header, ciphertext and one tag per frame, ending in a short frame."""
        size = 2 * FRAME_SIZE
        _put(store, KEY, payload(size))

        frames = size // FRAME_SIZE + 1
        assert _object(tmp_path).stat().st_size == HEADER_SIZE + size + frames * TAG_SIZE

    def test_objects_live_under_objects_folder(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """A key names a file under ``root/objects``."""
        _put(store, KEY, b"x")

        assert _object_files(tmp_path) == [_object(tmp_path)]


class TestEncryptionAtRest:
    def test_ciphertext_does_not_contain_the_plaintext(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """No recognisable run of the plaintext reaches the disk."""
        data = b"CONFIDENTIAL-term-sheet;" * 100_000
        _put(store, KEY, data)

        on_disk = _object(tmp_path).read_bytes()

        assert b"CONFIDENTIAL" not in on_disk
        assert b"term-sheet" not in on_disk

    def test_same_plaintext_encrypts_differently_each_time(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """A fresh data key per object makes two writes of one content differ on disk."""
        other = "documents/" + str(uuid4())
        _put(store, KEY, b"same bytes")
        _put(store, other, b"same bytes")

        first = _object(tmp_path).read_bytes()
        second = _object(tmp_path, other).read_bytes()
        assert first[:4] == second[:4] == b"DVB2"
        assert first[4:] != second[4:]

    def test_another_master_key_cannot_read(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """An object is unreadable under a different master key."""
        _put(store, KEY, b"secret")

        with pytest.raises(BlobUnreadable):
            _get(_store(tmp_path, master_key=b"\x01" * 32), KEY)

    def test_master_key_must_be_32_bytes(self, tmp_path: Path) -> None:
        """A master key of another size is refused at construction."""
        with pytest.raises(ValueError, match="32 bytes"):
            _store(tmp_path, master_key=b"short")


class TestTamperDetection:
    """Every way of damaging a stored object raises BlobUnreadable, nothing else."""

    SIZE = 2 * FRAME_SIZE + FRAME_SIZE // 2  # two full frames and a short final one

    @pytest.fixture
    def stored(self, store: LocalBlobStore, tmp_path: Path) -> Path:
        _put(store, KEY, payload(self.SIZE))
        return _object(tmp_path)

    def _flip(self, path: Path, offset: int) -> None:
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))

    def test_empty_file(self, store: LocalBlobStore, stored: Path) -> None:
        """A zero-length file has no header."""
        stored.write_bytes(b"")

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_bad_magic(self, store: LocalBlobStore, stored: Path) -> None:
        """A file not starting with the format's magic is refused."""
        self._flip(stored, 0)

        with pytest.raises(BlobUnreadable, match="header"):
            _get(store, KEY)

    def test_truncated_header(self, store: LocalBlobStore, stored: Path) -> None:
        """A file shorter than the header is refused."""
        stored.write_bytes(stored.read_bytes()[: HEADER_SIZE - 1])

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    @pytest.mark.parametrize(
        "offset",
        [
            4,  # salt
            HEADER_SIZE - 1,  # last salt byte
            _frame_offset(0),  # first ciphertext byte
            _frame_offset(0) + 12345,  # inside frame 0
            _frame_offset(1) - 1,  # frame 0's tag
            _frame_offset(1) + FRAME_SIZE // 2,  # inside frame 1
            _frame_offset(2),  # final frame
            -1,  # final frame's tag
        ],
        ids=[
            "salt",
            "salt-end",
            "frame0-start",
            "frame0-mid",
            "frame0-tag",
            "frame1",
            "final-frame",
            "final-tag",
        ],
    )
    def test_any_flipped_bit(self, store: LocalBlobStore, stored: Path, offset: int) -> None:
        """One flipped bit anywhere after the magic fails authentication."""
        self._flip(stored, offset if offset >= 0 else stored.stat().st_size + offset)

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_final_frame_removed(self, store: LocalBlobStore, stored: Path) -> None:
        """Cutting the file at a frame boundary, losing the final frame, is detected."""
        stored.write_bytes(stored.read_bytes()[: _frame_offset(2)])

        with pytest.raises(BlobUnreadable, match="truncated"):
            _get(store, KEY)

    def test_truncated_mid_frame(self, store: LocalBlobStore, stored: Path) -> None:
        """Cutting the file inside a frame is detected."""
        stored.write_bytes(stored.read_bytes()[: _frame_offset(1) + 100])

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_only_header_left(self, store: LocalBlobStore, stored: Path) -> None:
        """A header with no frames at all is detected."""
        stored.write_bytes(stored.read_bytes()[:HEADER_SIZE])

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    @pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG_SIZE, b"y" * RECORD_SIZE])
    def test_bytes_after_final_frame(
        self, store: LocalBlobStore, stored: Path, extra: bytes
    ) -> None:
        """Anything appended after the final frame is detected."""
        with stored.open("ab") as file:
            file.write(extra)

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_empty_object_with_bytes_appended(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """An empty object's lone final frame cannot be followed by more bytes."""
        _put(store, KEY, b"")
        with _object(tmp_path).open("ab") as file:
            file.write(b"\x00")

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_swapped_frames(self, store: LocalBlobStore, stored: Path) -> None:
        """Exchanging two full frames is detected."""
        data = stored.read_bytes()
        frame0 = data[_frame_offset(0) : _frame_offset(1)]
        frame1 = data[_frame_offset(1) : _frame_offset(2)]
        stored.write_bytes(data[:HEADER_SIZE] + frame1 + frame0 + data[_frame_offset(2) :])

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_dropped_middle_frame(self, store: LocalBlobStore, stored: Path) -> None:
        """Removing a whole frame from the middle is detected."""
        data = stored.read_bytes()
        stored.write_bytes(data[: _frame_offset(1)] + data[_frame_offset(2) :])

        with pytest.raises(BlobUnreadable):
            _get(store, KEY)

    def test_object_moved_to_another_key(
        self, store: LocalBlobStore, stored: Path, tmp_path: Path
    ) -> None:
        """An intact object copied under another key does not read as that key."""
        other = "documents/" + str(uuid4())
        _object(tmp_path, other).write_bytes(stored.read_bytes())

        with pytest.raises(BlobUnreadable):
            _get(store, other)

    def test_key_names_a_folder(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """A key that names a folder is unreadable, not an IsADirectoryError."""
        _object(tmp_path, "documents/folder/inner").parent.mkdir(parents=True)

        with pytest.raises(BlobUnreadable):
            _get(store, "documents/folder")

    def test_frames_before_the_damage_are_served(self, store: LocalBlobStore, stored: Path) -> None:
        """Damage in a later frame surfaces mid-stream, after the good frames."""
        self._flip(stored, _frame_offset(2) + 5)
        chunks = store.read(KEY, None)

        assert len(next(chunks)) == FRAME_SIZE
        assert len(next(chunks)) == FRAME_SIZE
        with pytest.raises(BlobUnreadable):
            next(chunks)


class TestReadStream:
    def test_abandoned_stream_closes_its_file(self, store: LocalBlobStore) -> None:
        """Closing a half-read stream releases the file descriptor."""
        _put(store, KEY, payload(2 * FRAME_SIZE + 1))
        before = _open_fds()
        chunks = store.read(KEY, None)
        next(chunks)
        assert _open_fds() == before + 1

        chunks.close()

        assert _open_fds() == before

    def test_version_id_is_ignored(self, store: LocalBlobStore) -> None:
        """The local store has no versions; any version id reads the current object."""
        _put(store, KEY, b"only version")

        assert b"".join(store.read(KEY, "v1")) == b"only version"


class TestAtomicWrites:
    def test_failed_fsync_leaves_nothing(
        self, store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A disk-full fsync fails the commit with BlobStoreUnavailable and drops the temp file."""
        writer = store.open_writer(KEY)
        writer.write(b"data")

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(BlobStoreUnavailable):
            writer.commit()
        monkeypatch.undo()

        assert _object_files(tmp_path) == []
        assert _tmp_files(tmp_path) == []
        writer.abort()

    def test_failed_rename_leaves_nothing(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """A commit whose rename fails (the key names a folder) cleans up its temp file."""
        _object(tmp_path, KEY + "/inner").parent.mkdir(parents=True)
        writer = store.open_writer(KEY)
        writer.write(b"data")

        with pytest.raises(BlobStoreUnavailable):
            writer.commit()

        assert _tmp_files(tmp_path) == []
        assert _object_files(tmp_path) == []

    def test_failed_folder_sync_does_not_leave_an_object(
        self, store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the folder cannot be synced after the rename, the object is withdrawn."""
        real_fsync = os.fsync
        calls = {"n": 0}

        def fail_second(fd: int) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.EIO, "Input/output error")
            real_fsync(fd)

        writer = store.open_writer(KEY)
        writer.write(b"data")
        monkeypatch.setattr(os, "fsync", fail_second)
        with pytest.raises(BlobStoreUnavailable):
            writer.commit()
        monkeypatch.undo()

        assert _object_files(tmp_path) == []
        assert _tmp_files(tmp_path) == []

    def test_failed_write_is_unavailable_and_cleans_up(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """A write the filesystem refuses raises BlobStoreUnavailable and drops the temp file."""
        writer = store.open_writer(KEY)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FRAME_SIZE // 2, hard))
        try:
            with pytest.raises(BlobStoreUnavailable):
                writer.write(payload(FRAME_SIZE))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

        assert _tmp_files(tmp_path) == []
        assert _object_files(tmp_path) == []
        writer.abort()

    def test_crashed_writer_leaves_nothing_under_objects(self, tmp_path: Path) -> None:
        """A process killed mid-write leaves only a temp file, which cleanup removes."""
        script = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from vault.adapters.blobs.local import LocalBlobStore\n"
            "from vault.adapters.blobs.signing import UrlSigner\n"
            "store = LocalBlobStore(Path(sys.argv[1]), bytes(32), UrlSigner(bytes(32)), 'http://x')\n"
            f"writer = store.open_writer({KEY!r})\n"
            "writer.write(b'z' * (2 * 1024 * 1024 + 7))\n"
            "os._exit(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=60
        )
        assert result.returncode == 3, result.stderr

        assert _object_files(tmp_path) == []
        assert len(_tmp_files(tmp_path)) == 1
        assert clean_stale_tmp(tmp_path) == 1
        assert _tmp_files(tmp_path) == []


class TestStaleTempCleanup:
    def test_live_writers_are_left_alone(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """Cleanup skips a temp file whose writer is still working, and it can still commit."""
        writer = store.open_writer(KEY)
        writer.write(b"in progress")

        assert store.clean_stale_tmp() == 0
        assert len(_tmp_files(tmp_path)) == 1
        writer.commit()
        assert _get(store, KEY) == b"in progress"

    def test_unlocked_leftovers_are_removed(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """Files in tmp/ that no writer holds are removed."""
        (tmp_path / "tmp").mkdir()
        (tmp_path / "tmp" / "w-old.part").write_bytes(b"leftover")

        assert store.clean_stale_tmp() == 1
        assert _tmp_files(tmp_path) == []

    def test_missing_tmp_folder_is_fine(self, tmp_path: Path) -> None:
        """Cleanup on a fresh root removes nothing and does not fail."""
        assert clean_stale_tmp(tmp_path / "never-created") == 0


class TestKeys:
    def test_unsafe_key_error_is_not_blob_unreadable(self, store: LocalBlobStore) -> None:
        """A bad key is the caller's bug, raised before any I/O, not a storage state."""
        with pytest.raises(ValueError) as caught:
            store.read("../x", None)

        assert not isinstance(caught.value, BlobUnreadable)


class TestDelete:
    def test_delete_failure_is_unavailable(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """An OS refusal to delete (the key names a non-empty folder) is BlobStoreUnavailable."""
        _put(store, KEY + "/inner", b"x")

        with pytest.raises(BlobStoreUnavailable):
            store.delete(KEY, None)


class TestList:
    def test_last_modified_is_the_files_mtime(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """An object's ``last_modified`` is its file's mtime, in UTC."""
        _put(store, KEY, b"dated")
        moment = 1_600_000_000.25
        os.utime(_object(tmp_path), (moment, moment))

        ((stored,),) = list(store.list_objects("documents/"))

        assert stored.key == KEY
        assert stored.last_modified == datetime.fromtimestamp(moment, UTC)

    def test_only_committed_regular_files_are_objects(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """Symlinks, fifos and the temp files of writers in progress are not listed."""
        _put(store, KEY, b"real")
        folder = tmp_path / "objects" / "documents"
        (folder / str(uuid4())).symlink_to(_object(tmp_path))
        os.mkfifo(folder / str(uuid4()))
        writer = store.open_writer(f"documents/{uuid4()}")
        writer.write(b"in progress")
        assert len(_tmp_files(tmp_path)) == 1

        assert [s.key for page in store.list_objects("") for s in page] == [KEY]
        writer.abort()

    def test_a_listing_holds_one_open_folder_per_level(self, store: LocalBlobStore) -> None:
        """Mid-way through nested folders a listing holds at most one descriptor per level,
        and closing it early releases them all."""
        for index in range(6):
            _put(store, f"documents/a/b/{index}", b"x")
        before = _open_fds()
        pages = store.list_objects("documents/", page_size=1)

        first = next(pages)

        assert first[0].key.startswith("documents/a/b/")
        assert before < _open_fds() <= before + 3
        pages.close()
        assert _open_fds() == before

    def test_objects_deleted_while_listing_are_skipped(
        self, store: LocalBlobStore, tmp_path: Path
    ) -> None:
        """Files removed after the listing has read their folder are skipped, not an error."""
        for _ in range(10):
            _put(store, f"documents/{uuid4()}", b"x")
        pages = store.list_objects("documents/", page_size=1)
        first = next(pages)
        for path in _object_files(tmp_path):
            if path.name != first[0].key.split("/")[1]:
                path.unlink()

        assert list(pages) == []

    def test_a_folder_that_cannot_be_read_is_unavailable(
        self, store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An OS refusal to read a folder met mid-walk is BlobStoreUnavailable."""
        _put(store, "documents/sub/x", b"x")
        real_scandir = os.scandir

        def refuse_sub(path: Any) -> Any:
            if str(path).endswith("/sub"):
                raise PermissionError(errno.EACCES, "denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr("vault.adapters.blobs.local.os.scandir", refuse_sub)

        with pytest.raises(BlobStoreUnavailable, match="denied"):
            list(store.list_objects("documents/"))


class TestPing:
    def test_writable_root_pings(self, store: LocalBlobStore, tmp_path: Path) -> None:
        """A writable root answers and keeps no probe file."""
        store.ping()

        assert _tmp_files(tmp_path) == []
        assert (tmp_path / "objects").is_dir()

    def test_open_writer_on_unusable_root_is_unavailable(self, tmp_path: Path) -> None:
        """Starting a write under an unusable root is BlobStoreUnavailable, not OSError."""
        root = tmp_path / "file"
        root.write_bytes(b"")

        with pytest.raises(BlobStoreUnavailable):
            _store(root).open_writer(KEY)


class TestPresign:
    def test_url_points_at_the_blob_route_with_a_valid_token(self, store: LocalBlobStore) -> None:
        """The URL is the blob route under the public base URL, carrying verifiable claims."""
        document_id = uuid4()
        before = int(time.time())

        url = store.presign(
            KEY,
            None,
            filename="deal.pdf",
            mime_type="application/pdf",
            expires_in=300,
            document_id=document_id,
        )

        after = int(time.time())
        prefix = BASE_URL + "/api/v1/blobs/"
        assert url.startswith(prefix)
        claims = UrlSigner(SIGNING_SECRET).verify(url[len(prefix) :], now=before)
        assert claims.document_id == document_id
        assert claims.key == KEY
        assert claims.version_id is None
        assert claims.filename == "deal.pdf"
        assert claims.mime_type == "application/pdf"
        assert before + 300 <= claims.expires_at <= after + 300

    def test_url_expires_after_expires_in(self, store: LocalBlobStore) -> None:
        """The token is refused once ``expires_in`` seconds have passed."""
        url = store.presign(
            KEY, None, filename="a", mime_type="text/plain", expires_in=1, document_id=uuid4()
        )
        token = url.rsplit("/", 1)[1]

        with pytest.raises(ValueError, match="expired"):
            UrlSigner(SIGNING_SECRET).verify(token, now=time.time() + 2)
