"""The BlobStore contract, run against every implementation.

``local`` is the encrypted file store in a temp folder; ``s3`` is the S3
store on moto's server (real HTTP) with a fresh versioned bucket per test.
What one backend can do that the other cannot is tested in that backend's
own module (``test_blobs_local.py``, ``test_blobs_s3.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.vault.blob_helpers import (
    BASE_URL,
    KEY,
    KMS_KEY_ID,
    MASTER_KEY,
    SIGNING_SECRET,
    MiB,
    drop_bucket,
    new_bucket,
    payload,
    pending_uploads,
    s3_client,
    stored_versions,
)
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.blobs.s3 import S3BlobStore
from vault.adapters.blobs.s3_writer import PART_SIZE
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.ports import BlobStore

# ---------------------------------------------------------------- backends


@attrs.frozen
class BlobBackend:
    """One implementation, and ways to look at it around the store."""

    name: str
    store: BlobStore
    bucket: str
    """What ``store.bucket`` must be."""
    pending_writes: Callable[[], int]
    """Writes in progress that hold storage (temp files, multipart uploads)."""
    stored_objects: Callable[[], int]
    """Committed objects, every version counted."""
    fetch: Callable[[str], bytes]
    """Follow a presigned URL the way a client would, returning the bytes served."""
    unreachable: Callable[[], BlobStore]
    """A store of the same kind whose storage cannot be reached."""


@pytest.fixture
def local_backend(tmp_path: Path) -> BlobBackend:
    root = tmp_path / "blobs"
    signer = UrlSigner(SIGNING_SECRET)
    store = LocalBlobStore(root, MASTER_KEY, signer, BASE_URL)

    def count(folder: str) -> int:
        path = root / folder
        return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0

    def fetch(url: str) -> bytes:
        # The URL is served by the service's blob route, which is not running
        # here: check its shape, then do what the route does with the token.
        prefix = BASE_URL + "/api/v1/blobs/"
        assert url.startswith(prefix)
        token = url[len(prefix) :]
        assert token and "/" not in token and "?" not in token
        claims = signer.verify(token, now=time.time())
        return b"".join(store.read(claims.key, claims.version_id))

    def unreachable() -> BlobStore:
        not_a_folder = tmp_path / "not-a-folder"
        not_a_folder.write_bytes(b"")
        return LocalBlobStore(not_a_folder, MASTER_KEY, signer, BASE_URL)

    return BlobBackend(
        "local", store, "local", lambda: count("tmp"), lambda: count("objects"), fetch,
        unreachable,
    )


@pytest.fixture
def s3_backend(aws_env: str) -> Iterator[BlobBackend]:
    client = s3_client(aws_env)
    bucket = new_bucket(client)
    store = S3BlobStore(client, bucket, KMS_KEY_ID)

    def fetch(url: str) -> bytes:
        assert url.startswith(aws_env + "/")
        with httpx.Client() as http:
            answer = http.get(url)
        assert answer.status_code == 200, answer.text
        return answer.content

    try:
        yield BlobBackend(
            "s3",
            store,
            bucket,
            lambda: len(pending_uploads(client, bucket)),
            lambda: len(stored_versions(client, bucket)),
            fetch,
            lambda: S3BlobStore(client, f"vault-missing-{uuid.uuid4().hex[:12]}", KMS_KEY_ID),
        )
    finally:
        try:
            drop_bucket(client, bucket)
        finally:
            client.close()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> BlobBackend:
    result: BlobBackend = request.getfixturevalue(f"{request.param}_backend")
    return result


@pytest.fixture
def store(backend: BlobBackend) -> BlobStore:
    return backend.store


def put(store: BlobStore, key: str, data: bytes, chunk: int = 256 * 1024) -> str | None:
    writer = store.open_writer(key)
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        writer.write(view[start : start + chunk].tobytes())
    return writer.commit()


def get(store: BlobStore, key: str, version_id: str | None = None) -> bytes:
    return b"".join(store.read(key, version_id))


# ---------------------------------------------------------------- the contract


class TestRoundTrip:
    @pytest.mark.parametrize(
        "size",
        [0, 1, 5 * MiB, PART_SIZE - 1, PART_SIZE, PART_SIZE + 1, 20 * MiB],
        ids=["0B", "1B", "5MiB", "part-1", "part", "part+1", "20MiB"],
    )
    def test_bytes_come_back_unchanged(self, backend: BlobBackend, size: int) -> None:
        """What was committed is what is read, below, at and across the part size, and the
        commit leaves no write pending behind it."""
        data = payload(size)

        version_id = put(backend.store, KEY, data)

        assert get(backend.store, KEY) == data
        assert get(backend.store, KEY, version_id) == data
        assert backend.pending_writes() == 0

    @pytest.mark.parametrize(
        ("size", "chunk"),
        [
            (100_003, 7),
            (PART_SIZE + 5, 65_537),
            (2 * PART_SIZE + 3, 3 * MiB - 1),
            (2 * PART_SIZE + 1, PART_SIZE + 1),
            (2 * PART_SIZE + 7, 3 * PART_SIZE),
        ],
        ids=["7B", "64KiB+1", "3MiB-1", "part+1", "bigger-than-object"],
    )
    def test_chunking_of_writes_does_not_matter(
        self, store: BlobStore, size: int, chunk: int
    ) -> None:
        """Any split of the input, smaller or larger than a part, gives the same bytes back."""
        data = payload(size)

        put(store, KEY, data, chunk=chunk)

        assert get(store, KEY) == data

    def test_writer_accepts_memoryview_and_bytearray(self, store: BlobStore) -> None:
        """Buffers other than bytes are accepted as chunks, and empty chunks are harmless."""
        writer: Any = store.open_writer(KEY)  # both accept any buffer; the Protocol says bytes
        writer.write(memoryview(b"abc"))
        writer.write(bytearray(b"def"))
        writer.write(b"")
        writer.commit()

        assert get(store, KEY) == b"abcdef"

    def test_reads_never_yield_empty_chunks(self, store: BlobStore) -> None:
        """A stream is non-empty chunks of at most about 1 MiB; an empty object yields none."""
        put(store, KEY, payload(2 * MiB + 10))
        put(store, KEY + "-empty", b"")

        sizes = [len(chunk) for chunk in store.read(KEY, None)]

        assert sum(sizes) == 2 * MiB + 10
        assert all(0 < size <= MiB for size in sizes)
        assert list(store.read(KEY + "-empty", None)) == []

    def test_rewriting_a_key_replaces_what_it_reads_as(self, store: BlobStore) -> None:
        """A second commit to the same key wins for a read without a version."""
        put(store, KEY, b"first version, longer than the second")
        put(store, KEY, b"second")

        assert get(store, KEY) == b"second"

    def test_bucket_is_what_documents_record(self, backend: BlobBackend) -> None:
        """``bucket`` names where the store keeps objects (``local`` or the S3 bucket)."""
        assert backend.store.bucket == backend.bucket


class TestVisibility:
    def test_nothing_is_visible_before_commit(self, backend: BlobBackend) -> None:
        """An object being written, even past one part, cannot be read until committed."""
        writer = backend.store.open_writer(KEY)
        writer.write(payload(PART_SIZE + 1))

        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY)
        assert backend.stored_objects() == 0

        writer.commit()
        assert len(get(backend.store, KEY)) == PART_SIZE + 1
        assert backend.pending_writes() == 0

    def test_abort_leaves_nothing(self, backend: BlobBackend) -> None:
        """Aborting after several parts leaves no object and nothing pending."""
        writer = backend.store.open_writer(KEY)
        writer.write(payload(2 * PART_SIZE + 1))
        assert backend.pending_writes() == 1

        writer.abort()

        assert backend.pending_writes() == 0
        assert backend.stored_objects() == 0
        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY)

    def test_abort_of_a_small_write_leaves_nothing(self, backend: BlobBackend) -> None:
        """Aborting a write that never filled a part leaves nothing either."""
        writer = backend.store.open_writer(KEY)
        writer.write(b"short")

        writer.abort()

        assert backend.pending_writes() == 0
        assert backend.stored_objects() == 0

    def test_abort_is_safe_before_writing_and_twice(self, backend: BlobBackend) -> None:
        """Abort with nothing written, and a second abort, are quiet no-ops."""
        writer = backend.store.open_writer(KEY)

        writer.abort()
        writer.abort()

        assert backend.pending_writes() == 0
        assert backend.stored_objects() == 0

    def test_abort_after_commit_keeps_the_object(self, store: BlobStore) -> None:
        """A committed object is not undone by a late abort, nor by a second one."""
        writer = store.open_writer(KEY)
        writer.write(b"kept")
        writer.commit()

        writer.abort()
        writer.abort()

        assert get(store, KEY) == b"kept"

    def test_finished_writer_refuses_more(self, store: BlobStore) -> None:
        """After commit or abort, write and commit are the caller's bug (ValueError)."""
        committed = store.open_writer(KEY)
        committed.commit()
        aborted = store.open_writer(KEY + "-2")
        aborted.abort()

        for writer in (committed, aborted):
            with pytest.raises(ValueError):
                writer.write(b"late")
            with pytest.raises(ValueError):
                writer.commit()


class TestRead:
    def test_missing_key_is_unreadable(self, store: BlobStore) -> None:
        """A key never written is BlobUnreadable, raised while reading."""
        chunks = store.read(KEY, None)

        with pytest.raises(BlobUnreadable):
            next(chunks)

    def test_abandoned_stream_can_be_closed(self, store: BlobStore) -> None:
        """Closing a stream after its first chunk releases it without error."""
        put(store, KEY, payload(3 * MiB))
        chunks = store.read(KEY, None)
        assert next(chunks)

        chunks.close()  # type: ignore[attr-defined]

        assert len(get(store, KEY)) == 3 * MiB


class TestDelete:
    def test_deleted_object_is_gone(self, backend: BlobBackend) -> None:
        """Deleting what a commit returned removes the object (the rollback of a write)."""
        version_id = put(backend.store, KEY, b"rollback me")

        backend.store.delete(KEY, version_id)

        assert backend.stored_objects() == 0
        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY)

    def test_deleting_a_missing_object_is_fine(self, backend: BlobBackend) -> None:
        """Delete of a key never written returns None, and the key stays absent while the
        objects beside it stay readable."""
        other = KEY + "-kept"
        put(backend.store, other, b"bystander")

        assert backend.store.delete(KEY, None) is None

        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY)
        assert get(backend.store, other) == b"bystander"
        assert backend.stored_objects() == 1


class TestPresign:
    @pytest.mark.parametrize("size", [1, PART_SIZE + 1], ids=["1B", "multipart"])
    def test_presigned_url_serves_the_exact_bytes(self, backend: BlobBackend, size: int) -> None:
        """Following the URL yields the committed bytes (pinned to the version when given)."""
        data = payload(size)
        version_id = put(backend.store, KEY, data)

        url = backend.store.presign(
            KEY,
            version_id,
            filename="deal.pdf",
            mime_type="application/pdf",
            expires_in=300,
            document_id=uuid.uuid4(),
        )

        assert backend.fetch(url) == data


class TestPing:
    def test_a_working_store_pings(self, backend: BlobBackend) -> None:
        """ping returns None when the store is reachable, leaving nothing written behind,
        while the same kind of store whose storage cannot be reached refuses it."""
        assert backend.store.ping() is None

        assert (backend.pending_writes(), backend.stored_objects()) == (0, 0)
        with pytest.raises(BlobStoreUnavailable):
            backend.unreachable().ping()


class TestKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "",
            "../escape",
            "documents/../x",
            "documents/../../etc/passwd",
            "documents/..",
            "/abs",
            "/etc/passwd",
            "documents\\evil",
            "..\\..\\evil",
            "documents//double",
            "./documents/x",
            "documents/",
            "documents/\x00nul",
        ],
    )
    def test_unsafe_keys_are_a_value_error_everywhere(self, backend: BlobBackend, key: str) -> None:
        """Keys that could escape or alias a folder are refused before any I/O."""
        store = backend.store
        with pytest.raises(ValueError):
            store.open_writer(key)
        with pytest.raises(ValueError):
            store.read(key, None)
        with pytest.raises(ValueError):
            store.delete(key, None)
        with pytest.raises(ValueError):
            store.presign(
                key, None, filename="f", mime_type="text/plain", expires_in=60,
                document_id=uuid.uuid4(),
            )
        assert backend.pending_writes() == 0


class TestList:
    PREFIX = "documents/"

    @staticmethod
    def keys(store: BlobStore, prefix: str = "documents/", **options: Any) -> list[str]:
        return [stored.key for page in store.list_objects(prefix, **options) for stored in page]

    def test_an_empty_store_lists_nothing(self, store: BlobStore) -> None:
        """A store nothing was ever written to lists no page at all, under any prefix."""
        assert list(store.list_objects(self.PREFIX)) == []
        assert list(store.list_objects("")) == []

    def test_committed_objects_are_listed_once_each(self, store: BlobStore) -> None:
        """Every committed key under the prefix is listed exactly once, at any depth; keys
        outside it are listed only under a prefix that holds them."""
        documents = [f"documents/{uuid.uuid4()}" for _ in range(3)]
        nested = "documents/notes/readme.txt"
        for key in [*documents, nested, "other/x"]:
            put(store, key, b"listed")

        listed = self.keys(store)

        assert sorted(listed) == sorted([*documents, nested])
        assert sorted(self.keys(store, "")) == sorted([*documents, nested, "other/x"])
        assert self.keys(store, "documents/notes/") == [nested]

    def test_a_key_written_twice_is_listed_once(self, store: BlobStore) -> None:
        """Rewriting a key (a new version on S3) still lists it once."""
        put(store, KEY, b"first")
        put(store, KEY, b"second")

        assert self.keys(store) == [KEY]

    def test_pages_hold_at_most_page_size(self, store: BlobStore) -> None:
        """Five objects in pages of two come as pages of 2, 2 and 1, no key repeated."""
        written = {f"documents/{uuid.uuid4()}" for _ in range(5)}
        for key in written:
            put(store, key, b"x")

        pages = list(store.list_objects(self.PREFIX, page_size=2))

        assert [len(page) for page in pages] == [2, 2, 1]
        assert {stored.key for page in pages for stored in page} == written

    def test_last_modified_is_when_the_object_was_committed(self, store: BlobStore) -> None:
        """``last_modified`` is timezone-aware and falls around the commit (S3 keeps whole
        seconds, hence the margin)."""
        before = datetime.now(UTC) - timedelta(seconds=2)
        put(store, KEY, b"dated")
        after = datetime.now(UTC) + timedelta(seconds=1)

        ((stored,),) = list(store.list_objects(self.PREFIX))

        assert stored.key == KEY
        assert stored.last_modified.utcoffset() == timedelta(0)
        assert before <= stored.last_modified <= after

    def test_uncommitted_aborted_and_deleted_objects_are_not_listed(
        self, backend: BlobBackend
    ) -> None:
        """A write in progress (past one part), an aborted one and a deleted object are not
        listed; the write in progress is, once committed."""
        store = backend.store
        kept, pending, aborted, deleted = (f"documents/{uuid.uuid4()}" for _ in range(4))
        put(store, kept, b"kept")
        put(store, deleted, b"deleted")
        store.delete(deleted, None)
        dropped = store.open_writer(aborted)
        dropped.write(b"aborted")
        dropped.abort()
        writer = store.open_writer(pending)
        writer.write(payload(PART_SIZE + 1))
        assert backend.pending_writes() == 1

        assert self.keys(store) == [kept]

        writer.commit()
        assert sorted(self.keys(store)) == sorted([kept, pending])

    def test_listing_asks_nothing_until_iterated(self, backend: BlobBackend) -> None:
        """A store that cannot be reached hands out a listing, and fails with
        BlobStoreUnavailable only once it is iterated."""
        pages = backend.unreachable().list_objects(self.PREFIX)

        with pytest.raises(BlobStoreUnavailable):
            next(pages)

    @pytest.mark.parametrize(
        "prefix",
        ["documents", "/documents/", "../", "documents/../", "documents//", "a\\b/", "/", "./"],
    )
    def test_a_prefix_that_is_not_a_folder_is_a_value_error(
        self, backend: BlobBackend, prefix: str
    ) -> None:
        """Prefixes that are not a folder of valid keys are refused before any I/O (even by
        a store that cannot be reached)."""
        with pytest.raises(ValueError):
            backend.store.list_objects(prefix)
        with pytest.raises(ValueError):
            backend.unreachable().list_objects(prefix)

    @pytest.mark.parametrize("page_size", [0, -1, 1001])
    def test_page_size_out_of_bounds_is_a_value_error(
        self, backend: BlobBackend, page_size: int
    ) -> None:
        """Pages of fewer than one or more than 1000 objects are refused before any I/O."""
        with pytest.raises(ValueError):
            backend.unreachable().list_objects(self.PREFIX, page_size=page_size)
