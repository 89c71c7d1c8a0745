"""What only the S3 store does: SSE-KMS, versions, error mapping, SigV4 URLs, bounded memory.

Most tests run on moto's server. moto does not check KMS keys or presigned
URL signatures and expiry, so those are asserted on what the store sends
(captured with a botocore event hook) and on the URL it builds, not on
moto refusing anything. Failures moto cannot produce (throttling, access
denied, a truncated body, a checksum mismatch) come from a small fake S3
endpoint on loopback that answers every request the same way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from tests.vault.blob_helpers import (
    KEY,
    KMS_KEY_ID,
    MiB,
    drop_bucket,
    new_bucket,
    payload,
    pending_uploads,
    s3_client,
    stored_versions,
)
from vault.adapters.blobs.s3 import READ_CHUNK, S3BlobStore, ensure_bucket
from vault.adapters.blobs.s3_writer import PART_SIZE, S3BlobWriter
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.validation import content_disposition

Call = tuple[str, dict[str, Any]]


@pytest.fixture
def client(aws_env: str) -> Iterator[Any]:
    s3 = s3_client(aws_env)
    try:
        yield s3
    finally:
        s3.close()


@pytest.fixture
def bucket(client: Any) -> Iterator[str]:
    name = new_bucket(client)
    try:
        yield name
    finally:
        drop_bucket(client, name)


@pytest.fixture
def store(client: Any, bucket: str) -> S3BlobStore:
    return S3BlobStore(client, bucket, KMS_KEY_ID)


@pytest.fixture
def calls(client: Any) -> Iterator[list[Call]]:
    """Every S3 operation the client makes, with its parameters (a body only as its length)."""
    seen: list[Call] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        copied = dict(params)
        if "Body" in copied:
            copied["Body"] = len(copied["Body"])
        seen.append((model.name, copied))

    client.meta.events.register("provide-client-params.s3.*", record)
    try:
        yield seen
    finally:
        client.meta.events.unregister("provide-client-params.s3.*", record)


def named(calls: list[Call], operation: str) -> list[dict[str, Any]]:
    return [params for name, params in calls if name == operation]


@contextlib.contextmanager
def unreachable_for(client: Any, operation: str, *, calls: int | None = None) -> Iterator[None]:
    """While inside, ``operation`` fails as if S3 could not be reached: every call, or only
    the first ``calls`` of them."""
    left = {"calls": calls}

    def refuse(**_: Any) -> None:
        if left["calls"] is None:
            raise EndpointConnectionError(endpoint_url="http://s3.test")
        if left["calls"] > 0:
            left["calls"] -= 1
            raise EndpointConnectionError(endpoint_url="http://s3.test")

    event = f"before-call.s3.{operation}"
    client.meta.events.register(event, refuse)
    try:
        yield
    finally:
        client.meta.events.unregister(event, refuse)


def put(store: S3BlobStore, data: bytes, key: str = KEY, chunk: int = MiB) -> str | None:
    writer = store.open_writer(key)
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    return writer.commit()


def get(store: S3BlobStore, version_id: str | None = None, key: str = KEY) -> bytes:
    return b"".join(store.read(key, version_id))


class TestEncryption:
    def test_small_object_is_put_once_with_sse_kms(
        self, store: S3BlobStore, client: Any, bucket: str, calls: list[Call]
    ) -> None:
        """An object under one part is one PutObject with SSE-KMS, the key id and a checksum."""
        put(store, b"x" * 1000)

        assert [name for name, _ in calls] == ["PutObject"]
        (sent,) = named(calls, "PutObject")
        assert sent["ServerSideEncryption"] == "aws:kms"
        assert sent["SSEKMSKeyId"] == KMS_KEY_ID
        assert sent["ChecksumAlgorithm"] == "SHA256"
        head = client.head_object(Bucket=bucket, Key=KEY)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == KMS_KEY_ID

    def test_multipart_upload_is_created_with_sse_kms(
        self, store: S3BlobStore, client: Any, bucket: str, calls: list[Call]
    ) -> None:
        """A large object is one upload created with SSE-KMS; its parts carry no SSE headers."""
        put(store, payload(2 * PART_SIZE + 1))

        assert [name for name, _ in calls] == [
            "CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart",
            "CompleteMultipartUpload",
        ]
        (created,) = named(calls, "CreateMultipartUpload")
        assert created["ServerSideEncryption"] == "aws:kms"
        assert created["SSEKMSKeyId"] == KMS_KEY_ID
        assert created["ChecksumAlgorithm"] == "SHA256"
        parts = named(calls, "UploadPart")
        assert [p["PartNumber"] for p in parts] == [1, 2, 3]
        assert all(p["ChecksumAlgorithm"] == "SHA256" for p in parts)
        assert not any("ServerSideEncryption" in p or "SSEKMSKeyId" in p for p in parts)
        (completed,) = named(calls, "CompleteMultipartUpload")
        assert all(
            part.get("ChecksumSHA256") for part in completed["MultipartUpload"]["Parts"]
        )
        head = client.head_object(Bucket=bucket, Key=KEY)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == KMS_KEY_ID
        assert head["ContentLength"] == 2 * PART_SIZE + 1

    def test_part_checksums_are_the_sha256_of_each_part(
        self, store: S3BlobStore, calls: list[Call]
    ) -> None:
        """The checksums sent to complete the upload are those of the bytes written."""
        data = payload(PART_SIZE + 10)

        put(store, data)

        (completed,) = named(calls, "CompleteMultipartUpload")
        expected = [
            base64.b64encode(hashlib.sha256(data[i : i + PART_SIZE]).digest()).decode()
            for i in (0, PART_SIZE)
        ]
        assert [p["ChecksumSHA256"] for p in completed["MultipartUpload"]["Parts"]] == expected


class TestVersions:
    def test_commit_returns_the_version_id(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """The id commit returns is the object's current version, for both upload paths."""
        small = put(store, b"small")
        assert small == client.head_object(Bucket=bucket, Key=KEY)["VersionId"]

        large = put(store, payload(PART_SIZE + 1))
        assert large == client.head_object(Bucket=bucket, Key=KEY)["VersionId"]
        assert small is not None and large is not None and small != large

    def test_unversioned_bucket_commits_without_a_version(
        self, client: Any, aws_env: str
    ) -> None:
        """With versioning never enabled, commit returns None."""
        bucket = new_bucket(client, versioned=False)
        try:
            store = S3BlobStore(client, bucket, KMS_KEY_ID)
            assert put(store, b"small") is None
            assert put(store, payload(PART_SIZE + 1)) is None
        finally:
            drop_bucket(client, bucket)

    def test_overwrite_does_not_change_the_recorded_version(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """Tampering by overwriting the key: the recorded version still reads as written,
        while a read without a version (the key's current version) sees the tampered bytes."""
        original = b"%PDF-1.7 the signed agreement"
        version_id = put(store, original)

        client.put_object(Bucket=bucket, Key=KEY, Body=b"%PDF-1.7 a forged agreement")

        assert get(store, version_id) == original
        assert get(store, None) == b"%PDF-1.7 a forged agreement"

    def test_object_deleted_in_the_bucket_is_unreadable(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """A plain delete (a delete marker) hides the key's current version."""
        version_id = put(store, b"doomed")

        client.delete_object(Bucket=bucket, Key=KEY)

        with pytest.raises(BlobUnreadable):
            get(store, None)
        assert get(store, version_id) == b"doomed"

    def test_deleted_version_is_unreadable(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """A version deleted for good is BlobUnreadable when read by its id."""
        version_id = put(store, b"doomed")

        client.delete_object(Bucket=bucket, Key=KEY, VersionId=version_id)

        with pytest.raises(BlobUnreadable):
            get(store, version_id)
        with pytest.raises(BlobUnreadable):
            get(store, None)

    def test_unknown_version_is_unreadable(self, store: S3BlobStore) -> None:
        """A version id the key never had is BlobUnreadable."""
        put(store, b"present")

        with pytest.raises(BlobUnreadable):
            get(store, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")

    def test_delete_without_a_version_leaves_a_marker(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """delete(key, None) hides the object; the data stays as a noncurrent version."""
        version_id = put(store, b"hidden")

        store.delete(KEY, None)

        with pytest.raises(BlobUnreadable):
            get(store, None)
        assert [v["VersionId"] for v in stored_versions(client, bucket)] == [version_id]

    def test_delete_of_one_version_keeps_the_others(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """Rolling back the second write of a key leaves the first one current again."""
        first = put(store, b"first")
        second = put(store, b"second")

        store.delete(KEY, second)

        assert get(store, None) == b"first"
        assert [v["VersionId"] for v in stored_versions(client, bucket)] == [first]


class TestRead:
    def test_chunks_are_at_most_one_mebibyte(self, store: S3BlobStore) -> None:
        """The body is streamed in READ_CHUNK pieces, the last one shorter."""
        put(store, payload(2 * READ_CHUNK + READ_CHUNK // 2))

        assert [len(chunk) for chunk in store.read(KEY, None)] == [
            READ_CHUNK, READ_CHUNK, READ_CHUNK // 2
        ]

    def test_nothing_is_requested_until_iterated(
        self, store: S3BlobStore, calls: list[Call]
    ) -> None:
        """read() returns a stream; GetObject happens on the first next()."""
        put(store, b"lazy")
        calls.clear()

        chunks = store.read(KEY, "some-version")
        assert calls == []

        with pytest.raises(BlobUnreadable):
            next(chunks)
        assert named(calls, "GetObject") == [
            {"Bucket": store.bucket, "Key": KEY, "VersionId": "some-version"}
        ]

    def test_read_without_version_sends_none(self, store: S3BlobStore, calls: list[Call]) -> None:
        """A read of the current version sends no VersionId at all."""
        put(store, b"current")
        calls.clear()

        assert get(store, None) == b"current"
        assert named(calls, "GetObject") == [{"Bucket": store.bucket, "Key": KEY}]

    def test_missing_bucket_is_unavailable_not_unreadable(self, client: Any) -> None:
        """A bucket that does not exist is the store's fault, not one document's."""
        store = S3BlobStore(client, f"vault-missing-{uuid.uuid4().hex[:12]}", KMS_KEY_ID)

        with pytest.raises(BlobStoreUnavailable):
            get(store)
        with pytest.raises(BlobStoreUnavailable):
            store.ping()


class TestWriterMemory:
    def test_writer_holds_at_most_one_part(self, store: S3BlobStore, calls: list[Call]) -> None:
        """64 MiB written 1 MiB at a time: each part leaves as soon as it fills, and the
        writer never buffers a whole part once it has been sent."""
        size = 64 * MiB
        block = payload(MiB)
        digest = hashlib.sha256()
        writer = store.open_writer(KEY)
        assert isinstance(writer, S3BlobWriter)
        most_buffered = 0
        for written in range(1, size // MiB + 1):
            writer.write(block)
            digest.update(block)
            most_buffered = max(most_buffered, writer.buffered)
            assert len(named(calls, "UploadPart")) == written * MiB // PART_SIZE
        version_id = writer.commit()

        assert most_buffered < PART_SIZE
        assert writer.buffered == 0
        parts = named(calls, "UploadPart")
        assert len(parts) == size // PART_SIZE
        assert all(p["Body"] == PART_SIZE for p in parts)
        assert named(calls, "PutObject") == []
        reread = hashlib.sha256()
        for chunk in store.read(KEY, version_id):
            reread.update(chunk)
        assert reread.digest() == digest.digest()


class TestWriterFailures:
    def test_failed_commit_aborts_the_upload(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """CompleteMultipartUpload failing is BlobStoreUnavailable, and nothing is left."""
        writer = store.open_writer(KEY)
        writer.write(payload(PART_SIZE + 1))
        with unreachable_for(client, "CompleteMultipartUpload"), pytest.raises(
            BlobStoreUnavailable
        ):
            writer.commit()

        writer.abort()
        writer.abort()
        assert pending_uploads(client, bucket) == []
        assert stored_versions(client, bucket) == []

    def test_failed_part_aborts_the_upload(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """A part S3 refuses is BlobStoreUnavailable from write, and the upload is aborted."""
        writer = store.open_writer(KEY)
        writer.write(payload(PART_SIZE))
        with unreachable_for(client, "UploadPart"), pytest.raises(BlobStoreUnavailable):
            writer.write(payload(PART_SIZE))

        assert pending_uploads(client, bucket) == []
        with pytest.raises(ValueError):
            writer.write(b"more")
        writer.abort()

    def test_abort_that_fails_is_retried_by_the_next_abort(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """abort never raises; when S3 cannot be told, a later abort tries again."""
        writer = store.open_writer(KEY)
        writer.write(payload(PART_SIZE + 1))
        with unreachable_for(client, "AbortMultipartUpload", calls=1):
            writer.abort()
            assert len(pending_uploads(client, bucket)) == 1
            writer.abort()

        assert pending_uploads(client, bucket) == []

    def test_abort_of_an_upload_already_gone_is_quiet(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """An upload aborted behind the writer's back (NoSuchUpload) makes commit unavailable
        and abort quiet."""
        writer = store.open_writer(KEY)
        writer.write(payload(PART_SIZE + 1))
        assert isinstance(writer, S3BlobWriter)
        client.abort_multipart_upload(Bucket=bucket, Key=KEY, UploadId=writer.upload_id)

        with pytest.raises(BlobStoreUnavailable):
            writer.commit()
        writer.abort()

        assert writer.upload_id is None
        assert pending_uploads(client, bucket) == []



class TestList:
    def test_each_page_is_one_request_made_when_needed(
        self, store: S3BlobStore, calls: list[Call]
    ) -> None:
        """Pages are ListObjectsV2 requests with the prefix and MaxKeys, each made only when
        the previous page has been taken, following the continuation token."""
        for _ in range(5):
            put(store, b"x", key=f"documents/{uuid.uuid4()}")
        calls.clear()
        pages = store.list_objects("documents/", page_size=2)

        assert named(calls, "ListObjectsV2") == []
        assert len(next(pages)) == 2
        assert len(named(calls, "ListObjectsV2")) == 1
        assert [len(page) for page in pages] == [2, 1]

        requests = named(calls, "ListObjectsV2")
        assert [r["MaxKeys"] for r in requests] == [2, 2, 2]
        assert all(r["Prefix"] == "documents/" and r["Bucket"] == store.bucket for r in requests)
        assert "ContinuationToken" not in requests[0]
        assert all(r.get("ContinuationToken") for r in requests[1:])

    def test_a_key_whose_current_version_is_a_delete_marker_is_not_listed(
        self, store: S3BlobStore, client: Any, bucket: str
    ) -> None:
        """A deleted key keeps its old version in the bucket, but only current objects are
        listed."""
        put(store, b"gone")
        store.delete(KEY, None)
        assert len(stored_versions(client, bucket)) == 1

        assert list(store.list_objects("documents/")) == []

    @pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (503, "SlowDown")])
    def test_a_refused_listing_is_unavailable(
        self, fake_s3: Callable[..., S3BlobStore], status: int, code: str
    ) -> None:
        """Access denied or throttling while listing is BlobStoreUnavailable naming the code."""
        store = fake_s3(status, _s3_error(code), {"Content-Type": "application/xml"})

        with pytest.raises(BlobStoreUnavailable, match=code):
            next(store.list_objects("documents/"))


class TestStoreDown:
    def test_stopped_server_is_unavailable_everywhere(self, aws_env: str) -> None:
        """Once the endpoint stops answering, every call is BlobStoreUnavailable;
        presigning, which is computed locally, still works."""
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            setup = s3_client(endpoint)
            try:
                bucket = new_bucket(setup)
            finally:
                setup.close()
            client = s3_client(endpoint, retries={"max_attempts": 1, "mode": "standard"})
        finally:
            server.stop()
        try:
            store = S3BlobStore(client, bucket, KMS_KEY_ID)

            with pytest.raises(BlobStoreUnavailable):
                store.ping()
            with pytest.raises(BlobStoreUnavailable):
                get(store)
            with pytest.raises(BlobStoreUnavailable):
                put(store, b"small")
            writer = store.open_writer(KEY)
            with pytest.raises(BlobStoreUnavailable):
                writer.write(payload(PART_SIZE))
            writer.abort()
            with pytest.raises(BlobStoreUnavailable):
                store.delete(KEY, "v1")
            with pytest.raises(BlobStoreUnavailable):
                next(store.list_objects("documents/"))
            with pytest.raises(BlobStoreUnavailable):
                ensure_bucket(client, bucket)
            url = store.presign(
                KEY, None, filename="a.pdf", mime_type="application/pdf", expires_in=60,
                document_id=uuid.uuid4(),
            )
            assert "X-Amz-Signature=" in url
        finally:
            client.close()


class _FakeS3Handler(BaseHTTPRequestHandler):
    """Answers every request with ``server.reply`` (status, headers, body, declared length);
    with ``server.reset`` it then resets the connection instead of closing it."""

    protocol_version = "HTTP/1.1"
    server: _FakeS3

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        status, headers, body, length = self.server.reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True
        if self.server.reset:
            # SO_LINGER 0: close() sends RST instead of FIN.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FakeS3(ThreadingHTTPServer):
    daemon_threads = True
    reply: tuple[int, dict[str, str], bytes, int | None]
    reset: bool
    requests: list[str]

    def shutdown_request(self, request: Any) -> None:
        if self.reset:
            request.close()  # no shutdown(SHUT_WR) first: the client must see RST, not FIN
        else:
            super().shutdown_request(request)


@pytest.fixture
def fake_s3(aws_env: str) -> Iterator[Callable[..., S3BlobStore]]:
    """A loopback endpoint with a chosen answer, and S3 stores pointed at it."""
    server = _FakeS3(("127.0.0.1", 0), _FakeS3Handler)
    server.requests = []
    server.reset = False
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    port = server.server_address[1]
    clients: list[Any] = []

    def store_answering(
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        declared_length: int | None = None,
        reset: bool = False,
    ) -> S3BlobStore:
        server.reply = (status, headers or {}, body, declared_length)
        server.reset = reset
        client = s3_client(
            f"http://127.0.0.1:{port}", retries={"max_attempts": 1, "mode": "standard"}
        )
        clients.append(client)
        return S3BlobStore(client, "vault-fake", KMS_KEY_ID)

    try:
        yield store_answering
    finally:
        for client in clients:
            client.close()
        server.shutdown()
        server.server_close()
        thread.join()


def _s3_error(code: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{code} from the fake</Message></Error>"
    ).encode()


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (403, "AccessDenied"),
            (503, "SlowDown"),
            (500, "InternalError"),
            (400, "KMS.DisabledException"),
        ],
    )
    def test_store_failures_are_unavailable(
        self, fake_s3: Callable[..., S3BlobStore], status: int, code: str
    ) -> None:
        """Access denied, throttling, server errors and KMS refusals: the store's fault."""
        store = fake_s3(status, _s3_error(code), {"Content-Type": "application/xml"})

        with pytest.raises(BlobStoreUnavailable, match=code):
            get(store)
        with pytest.raises(BlobStoreUnavailable):
            store.ping()

    @pytest.mark.parametrize("code", ["NoSuchKey", "NoSuchVersion"])
    def test_missing_object_is_unreadable(
        self, fake_s3: Callable[..., S3BlobStore], code: str
    ) -> None:
        """S3 saying the key or version does not exist is BlobUnreadable."""
        store = fake_s3(404, _s3_error(code), {"Content-Type": "application/xml"})

        with pytest.raises(BlobUnreadable, match=code):
            get(store, "v1")

    def test_truncated_body_is_unreadable_mid_stream(
        self, fake_s3: Callable[..., S3BlobStore]
    ) -> None:
        """A body that ends before its Content-Length: the good chunks, then BlobUnreadable."""
        body = payload(READ_CHUNK + READ_CHUNK // 2)
        store = fake_s3(200, body, declared_length=3 * READ_CHUNK)
        chunks = store.read(KEY, None)

        assert next(chunks) == body[:READ_CHUNK]
        with pytest.raises(BlobUnreadable, match="truncated"):
            b"".join(chunks)

    def test_connection_reset_mid_body_is_unavailable(
        self, fake_s3: Callable[..., S3BlobStore]
    ) -> None:
        """A connection reset while the body streams is the store's failure, not a bad blob."""
        store = fake_s3(200, payload(READ_CHUNK // 2), declared_length=4 * READ_CHUNK, reset=True)

        with pytest.raises(BlobStoreUnavailable):
            get(store)

    def test_checksum_mismatch_is_unreadable(self, fake_s3: Callable[..., S3BlobStore]) -> None:
        """A body that does not match the SHA-256 S3 declares for it is BlobUnreadable."""
        declared = base64.b64encode(hashlib.sha256(b"what was stored").digest()).decode()
        store = fake_s3(200, b"what arrived", {"x-amz-checksum-sha256": declared})

        with pytest.raises(BlobUnreadable):
            get(store)

    def test_matching_checksum_reads(self, fake_s3: Callable[..., S3BlobStore]) -> None:
        """The same path with a correct checksum reads normally (the check is real)."""
        declared = base64.b64encode(hashlib.sha256(b"what was stored").digest()).decode()
        store = fake_s3(200, b"what was stored", {"x-amz-checksum-sha256": declared})

        assert get(store) == b"what was stored"

    def test_unreachable_endpoint_is_unavailable(self, aws_env: str) -> None:
        """Nothing listening at the endpoint: BlobStoreUnavailable, not a botocore error."""
        client = s3_client("http://127.0.0.1:9", retries={"max_attempts": 1, "mode": "standard"})
        try:
            store = S3BlobStore(client, "vault-nowhere", KMS_KEY_ID)
            with pytest.raises(BlobStoreUnavailable):
                store.ping()
            with pytest.raises(BlobStoreUnavailable):
                get(store)
        finally:
            client.close()


class TestPresign:
    def _url(self, store: S3BlobStore, version_id: str | None, **overrides: Any) -> str:
        args: dict[str, Any] = {
            "filename": "Term Sheet (final).pdf",
            "mime_type": "application/pdf",
            "expires_in": 600,
            "document_id": uuid.uuid4(),
        }
        args.update(overrides)
        return store.presign(KEY, version_id, **args)

    def test_url_is_sigv4_with_expiry_and_response_headers(self, store: S3BlobStore) -> None:
        """The URL carries a SigV4 signature, the expiry, and the attachment name and type."""
        url = self._url(store, "v-123", expires_in=437)

        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Signature"][0]
        assert query["X-Amz-Expires"] == ["437"]
        assert query["versionId"] == ["v-123"]
        assert query["response-content-type"] == ["application/pdf"]
        disposition = query["response-content-disposition"][0]
        assert disposition.startswith("attachment;")
        assert 'filename="Term Sheet (final).pdf"' in disposition
        assert "filename*=UTF-8''Term%20Sheet%20%28final%29.pdf" in disposition
        assert urlsplit(url).path == f"/{store.bucket}/{KEY}"

    def test_url_without_version_serves_the_current_one(self, store: S3BlobStore) -> None:
        """Without a version id the URL names none, so it serves the key's current version."""
        url = self._url(store, None)

        assert "versionId" not in parse_qs(urlsplit(url).query)

    def test_moto_serves_the_url_with_the_requested_headers(self, store: S3BlobStore) -> None:
        """Fetched over HTTP, the URL returns the bytes as a named attachment of that type."""
        version_id = put(store, b"%PDF-1.7 body")
        url = self._url(store, version_id, filename="Résumé \"v2\".pdf")

        with httpx.Client() as http:
            answer = http.get(url)

        assert answer.status_code == 200
        assert answer.content == b"%PDF-1.7 body"
        assert answer.headers["content-type"] == "application/pdf"
        assert answer.headers["content-disposition"] == content_disposition('Résumé "v2".pdf')

    def test_client_that_would_presign_sigv2_is_refused(self, aws_env: str) -> None:
        """A client left on botocore's default (SigV2 presigning in us-east-1) is refused."""
        session = boto3.session.Session(region_name="us-east-1")
        client = session.client("s3", endpoint_url=aws_env, config=Config(connect_timeout=5))
        try:
            with pytest.raises(ValueError, match="SigV4"):
                S3BlobStore(client, "vault-any", KMS_KEY_ID)
        finally:
            client.close()


class TestContentDisposition:
    @pytest.mark.parametrize(
        ("filename", "expected"),
        [
            ("deal.pdf", "attachment; filename=\"deal.pdf\"; filename*=UTF-8''deal.pdf"),
            (
                'a "quoted" \\name.pdf',
                "attachment; filename=\"a _quoted_ _name.pdf\"; "
                "filename*=UTF-8''a%20%22quoted%22%20%5Cname.pdf",
            ),
            (
                "Überweisung €.pdf",
                "attachment; filename=\"_berweisung _.pdf\"; "
                "filename*=UTF-8''%C3%9Cberweisung%20%E2%82%AC.pdf",
            ),
        ],
        ids=["ascii", "quotes", "non-ascii"],
    )
    def test_both_names(self, filename: str, expected: str) -> None:
        """An ASCII-safe ``filename`` for old clients, the exact name in ``filename*``."""
        assert content_disposition(filename) == expected


class TestEnsureBucket:
    def test_creates_a_versioned_bucket_and_is_idempotent(self, client: Any) -> None:
        """A missing bucket is created with versioning on; running it again changes nothing."""
        name = f"vault-ensure-{uuid.uuid4().hex[:12]}"
        try:
            ensure_bucket(client, name)
            ensure_bucket(client, name)

            assert client.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
        finally:
            drop_bucket(client, name)

    def test_turns_versioning_on_for_an_existing_bucket(self, client: Any) -> None:
        """An existing unversioned bucket gets versioning."""
        name = new_bucket(client, versioned=False)
        try:
            ensure_bucket(client, name)

            assert client.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
        finally:
            drop_bucket(client, name)


def test_a_bucket_the_vault_creates_has_object_lock(aws_env: str) -> None:
    """Object Lock can only be given to a bucket when it is made: ``ensure_bucket`` asks."""
    client = s3_client(aws_env)
    name = f"vault-made-{uuid.uuid4().hex[:12]}"
    ensure_bucket(client, name)
    assert S3BlobStore(client, name, KMS_KEY_ID).object_lock_enabled()
