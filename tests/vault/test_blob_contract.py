"""The BlobStore contract, run against every implementation.

``local`` is the encrypted file store in a temp folder; ``s3`` is the S3
store on moto's server (real HTTP) with a fresh versioned bucket per test.
What one backend can do that the other cannot is tested in that backend's
own module (``test_blobs_local.py``, ``test_blobs_s3.py``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import boto3
import httpx
import pytest
from botocore.config import Config

from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.blobs.s3 import PART_SIZE, S3BlobStore, ensure_bucket
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import BlobUnreadable
from vault.ports import BlobStore

MiB = 1024 * 1024
KEY = "documents/9b2f3c1e-5d4a-4e8b-a1c2-3d4e5f607182"
MASTER_KEY = bytes(range(32))
SIGNING_SECRET = b"signing-secret-0123456789abcdef!"
BASE_URL = "http://vault.test:8000"
KMS_KEY_ID = "arn:aws:kms:us-east-1:123456789012:key/0b7a4c5e-1f2d-4e3a-9c8b-7a6d5e4f3a2b"


# ---------------------------------------------------------------- S3 helpers
# Shared with test_blobs_s3.py.


def s3_client(endpoint: str, **config: Any) -> Any:
    """An S3 client as the service builds one (``vault.adapters.aws.clients``), signing SigV4."""
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"max_attempts": 3, "mode": "standard"},
        "signature_version": "s3v4",
    }
    options.update(config)
    session = boto3.session.Session(region_name="us-east-1")
    return session.client("s3", endpoint_url=endpoint, config=Config(**options))


def new_bucket(client: Any, *, versioned: bool = True) -> str:
    name = f"vault-test-{uuid.uuid4().hex[:16]}"
    if versioned:
        ensure_bucket(client, name)
    else:
        client.create_bucket(Bucket=name)
    return name


def drop_bucket(client: Any, bucket: str) -> None:
    """Abort pending uploads, delete every version and marker, then the bucket."""
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=bucket)


def pending_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def stored_versions(client: Any, bucket: str) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = client.list_object_versions(Bucket=bucket).get("Versions", [])
    return versions


def payload(size: int) -> bytes:
    """Random-looking bytes of any size, cheaply (a random block repeated)."""
    block = os.urandom(4096)
    return (block * (size // len(block) + 1))[:size]


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

    return BlobBackend(
        "local", store, "local", lambda: count("tmp"), lambda: count("objects"), fetch
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
    def test_bytes_come_back_unchanged(self, store: BlobStore, size: int) -> None:
        """What was committed is what is read, below, at and across the part size."""
        data = payload(size)

        version_id = put(store, KEY, data)

        assert get(store, KEY) == data
        assert get(store, KEY, version_id) == data

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
        """A committed object is not undone by a late abort."""
        writer = store.open_writer(KEY)
        writer.write(b"kept")
        writer.commit()

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

    def test_deleting_a_missing_object_is_fine(self, store: BlobStore) -> None:
        """Delete of a key never written returns quietly."""
        store.delete(KEY, None)


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
    def test_a_working_store_pings(self, store: BlobStore) -> None:
        """ping returns quietly when the store is reachable."""
        store.ping()


class TestKeys:
    @pytest.mark.parametrize(
        "key", ["", "../escape", "documents/../x", "/abs", "documents\\evil", "documents/"]
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
