"""The S3 blob store: one object per document in a versioned bucket, SSE-KMS.

Writing streams: a writer buffers at most one part (``PART_SIZE``). An
object that ends before its first part fills is sent with one
``PutObject``; a larger one becomes a multipart upload whose parts leave as
soon as they fill, and ``commit`` completes it. Every object is encrypted by
S3 under the configured KMS key (``ServerSideEncryption=aws:kms`` and
``SSEKMSKeyId`` on ``PutObject`` and ``CreateMultipartUpload``; parts inherit
the upload's encryption). Every ``PutObject`` and ``UploadPart`` carries a
SHA-256 checksum that S3 checks on arrival, and ``commit`` returns the new
object's ``VersionId`` (None when the bucket is not versioned, including
S3's ``"null"`` version of an unversioned write).

Reading streams the object in chunks of about ``READ_CHUNK`` bytes. botocore
checks a whole-object checksum on the way back when S3 sends one (objects
written with ``PutObject``); composite checksums of multipart objects are not
checked by the client.

Listing is ``ListObjectsV2`` with ``MaxKeys`` set to the page size, one
request per page as the caller advances, following ``NextContinuationToken``;
it sees each key's current version only (a key whose current version is a
delete marker is not listed), with S3's ``LastModified`` (for a multipart
object, when its upload was started).

Errors: botocore's exceptions are mapped here and go no further.
``BlobUnreadable`` means the object itself is missing or damaged: no such
key or version, a 404, a version that is a delete marker, a body shorter
than its Content-Length or failing its checksum. Everything else (endpoint
unreachable, timeouts, a connection reset mid-body, throttling, access
denied, KMS refusals, a missing bucket) is ``BlobStoreUnavailable``: the
store is down or misconfigured, the blob is not known to be bad. A listing
that fails is ``BlobStoreUnavailable`` too.

Object Lock: a writer given a retention writes the object locked;
``lock_state`` is one ``HeadObject`` (its ``ObjectLockMode``,
``ObjectLockRetainUntilDate`` and ``ObjectLockLegalHoldStatus``; on AWS the
caller needs ``s3:GetObjectRetention`` and ``s3:GetObjectLegalHold``, without
which S3 leaves those fields out); ``extend_retention`` and
``set_legal_hold`` read that state first and then change exactly the
version it names (``PutObjectRetention``, ``PutObjectLegalHold``), never with
a governance bypass. Retention dates are rounded up to whole seconds. In a
bucket without Object Lock they are ``BlobStoreUnavailable`` saying so.
``delete`` maps the ``AccessDenied`` S3 answers for a locked version to
``StorageLocked`` (after checking the version is locked), and checks the
current version itself before adding a delete marker (S3 would accept the
marker, leaving the locked version as a noncurrent one). Listing and
destroying every version of a key is ``s3_versions.py``.

Presigned URLs are SigV4 (``X-Amz-Signature``); the client must be built
with ``Config(signature_version="s3v4")``, because botocore otherwise signs
S3 URLs with SigV2 in regions that still accept it (us-east-1 among them).
The constructor refuses a client that would do that.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC
from typing import Any
from uuid import UUID

import attrs
import structlog
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    IncompleteReadError,
)

from vault.adapters.blobs import s3_versions
from vault.adapters.blobs.naming import check_key, check_page_size, check_prefix
from vault.adapters.blobs.s3_writer import (
    MiB,
    S3BlobWriter,
    error_code,
    lock_configuration,
    lock_params,
    whole_seconds,
)
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import (
    LockMode,
    ObjectLock,
    Retention,
    StorageLocked,
    StoredVersion,
    stronger,
)
from vault.domain.models import utcnow
from vault.domain.validation import content_disposition
from vault.ports import LIST_PAGE_SIZE, StoredObject

log = structlog.get_logger("vault.blobs")

READ_CHUNK = 1 * MiB

# Error codes that mean "this object (version) is not there", on GetObject.
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound", "MethodNotAllowed"})
# Codes that mean the bucket itself is gone: a store problem, never one blob's.
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
# What a body that ends early or does not match its checksum raises. botocore
# reads with urllib3's length check off and raises IncompleteReadError itself;
# ResponseStreamingError (a reset or broken connection) is the network's
# fault and stays BlobStoreUnavailable, so a blip never reads as tampering.
_DAMAGED_BODY = (IncompleteReadError, FlexibleChecksumError)


class S3BlobStore:
    """``BlobStore`` on one S3 bucket (versioned), objects encrypted with one KMS key."""

    def __init__(self, client: Any, bucket: str, kms_key_id: str) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if not kms_key_id:
            raise ValueError("a KMS key id is required")
        self._client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        _require_sigv4_presigning(client, bucket)

    def ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreUnavailable(f"S3 bucket {self.bucket} is not reachable: {exc}") from exc

    def open_writer(self, key: str, retention: Retention | None = None) -> S3BlobWriter:
        check_key(key)
        return S3BlobWriter(self._client, self.bucket, key, self.kms_key_id, retention)

    def object_lock_enabled(self) -> bool:
        return lock_configuration(self._client, self.bucket, BlobStoreUnavailable) is not None

    def lock_state(self, key: str, version_id: str | None) -> ObjectLock:
        check_key(key)
        where = _describe(key, version_id)
        try:
            answer = self._client.head_object(**_params(self.bucket, key, version_id))
        except ClientError as exc:
            if _is_missing(exc, version_id):
                self.ping()  # a HEAD's 404 has no body: it may be the bucket that is missing
                raise BlobUnreadable(f"{where} is missing: {error_code(exc)}") from exc
            raise BlobStoreUnavailable(f"cannot read the lock of {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"cannot read the lock of {where}: {exc}") from exc
        mode, until = answer.get("ObjectLockMode"), answer.get("ObjectLockRetainUntilDate")
        found = answer.get("VersionId")
        return ObjectLock(
            version_id=None if found in (None, "", "null") else found,
            mode=None if not mode else LockMode(str(mode).lower()),
            retain_until=None if until is None else until.astimezone(UTC),
            legal_hold=answer.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def extend_retention(
        self, key: str, version_id: str | None, retention: Retention
    ) -> ObjectLock:
        current = self.lock_state(key, version_id)
        wanted = stronger(current.retention, whole_seconds(retention))
        if wanted == current.retention:
            return current  # nothing would change: S3 is not asked
        params = lock_params(wanted)
        asked = {"Mode": params["ObjectLockMode"], "RetainUntilDate": wanted.retain_until}
        self._put_lock("put_object_retention", key, current.version_id, Retention=asked)
        return attrs.evolve(current, mode=wanted.mode, retain_until=wanted.retain_until)

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> ObjectLock:
        current = self.lock_state(key, version_id)
        hold = {"Status": "ON" if on else "OFF"}
        self._put_lock("put_object_legal_hold", key, current.version_id, LegalHold=hold)
        return attrs.evolve(current, legal_hold=on)

    def _put_lock(self, operation: str, key: str, version_id: str | None, **lock: Any) -> None:
        where = _describe(key, version_id)
        try:
            getattr(self._client, operation)(**_params(self.bucket, key, version_id), **lock)
        except ClientError as exc:
            if _is_missing(exc, version_id):
                raise BlobUnreadable(f"{where} is missing: {error_code(exc)}") from exc
            if error_code(exc) == "InvalidRequest" and not self.object_lock_enabled():
                raise BlobStoreUnavailable(
                    f"S3 bucket {self.bucket} has no Object Lock: cannot lock {where}"
                ) from exc
            raise BlobStoreUnavailable(f"cannot lock {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"cannot lock {where}: {exc}") from exc

    def read(self, key: str, version_id: str | None) -> Generator[bytes, None, None]:
        """The object's bytes in chunks of at most ``READ_CHUNK``.

        Nothing is requested until the first ``next``; the response body is
        closed when the stream is exhausted, fails or is closed.
        """
        check_key(key)
        return self._read(key, version_id)

    def _read(self, key: str, version_id: str | None) -> Generator[bytes, None, None]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        where = _describe(key, version_id)
        try:
            answer = self._client.get_object(**params)
        except ClientError as exc:
            if _is_missing(exc, version_id):
                raise BlobUnreadable(f"{where} is missing: {error_code(exc)}") from exc
            raise BlobStoreUnavailable(f"cannot read {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"cannot read {where}: {exc}") from exc
        body = answer["Body"]
        try:
            while True:
                try:
                    chunk = body.read(READ_CHUNK)
                except _DAMAGED_BODY as exc:
                    raise BlobUnreadable(f"{where} is damaged or truncated: {exc}") from exc
                except (BotoCoreError, ClientError) as exc:
                    raise BlobStoreUnavailable(f"reading {where} failed: {exc}") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def delete(self, key: str, version_id: str | None) -> None:
        """Remove that version for good (with ``version_id``), else add a delete marker.

        ``StorageLocked`` while that version (or the current one) is locked.
        """
        check_key(key)
        where = _describe(key, version_id)
        if version_id is None:
            self._refuse_if_locked(key, where)
        try:
            self._client.delete_object(**_params(self.bucket, key, version_id))
        except ClientError as exc:
            if _is_missing(exc, version_id):
                return
            if error_code(exc) == "AccessDenied":
                self._refuse_if_locked(key, where, version_id)
            raise BlobStoreUnavailable(f"cannot delete {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"cannot delete {where}: {exc}") from exc

    def _refuse_if_locked(self, key: str, where: str, version_id: str | None = None) -> None:
        try:
            lock = self.lock_state(key, version_id)
        except BlobUnreadable:
            return  # nothing there to protect
        if lock.blocks_deletion(utcnow()):
            held = "a legal hold" if lock.legal_hold else f"retention until {lock.retain_until}"
            raise StorageLocked(f"cannot delete {where}: it is under {held}")

    def versioning_enabled(self) -> bool:
        return s3_versions.versioning_enabled(self._client, self.bucket)

    def stored_versions(self, key: str) -> list[StoredVersion]:
        check_key(key)
        return s3_versions.stored_versions(self._client, self.bucket, key, self.lock_state)

    def destroy(self, key: str) -> list[StoredVersion]:
        check_key(key)
        return s3_versions.destroy(self._client, self.bucket, key, self.lock_state)

    def list_objects(
        self, prefix: str, *, page_size: int = LIST_PAGE_SIZE
    ) -> Generator[list[StoredObject], None, None]:
        """Current objects under ``prefix``, one ``ListObjectsV2`` page at a time.

        Nothing is requested until the first ``next``; each later page is
        requested only when the previous one has been handed out.
        """
        check_prefix(prefix)
        check_page_size(page_size)
        return self._list(prefix, page_size)

    def _list(self, prefix: str, page_size: int) -> Generator[list[StoredObject], None, None]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        while True:
            try:
                answer = self._client.list_objects_v2(**params)
            except (BotoCoreError, ClientError) as exc:
                raise BlobStoreUnavailable(
                    f"cannot list {prefix!r} in S3 bucket {self.bucket}: {exc}"
                ) from exc
            page = [
                StoredObject(item["Key"], item["LastModified"].astimezone(UTC))
                for item in answer.get("Contents", ())
            ]
            if page:
                yield page
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

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
        """A SigV4 GET URL that serves the object as an attachment named ``filename``."""
        check_key(key)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition(filename),
            "ResponseContentType": mime_type,
        }
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            url: str = self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreUnavailable(f"cannot sign a URL for {key}: {exc}") from exc
        return url


def ensure_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` if it does not exist (with Object Lock, which only a new bucket
    can be given), and turn its versioning on.

    Safe to run any number of times. Raises ``BlobStoreUnavailable`` when the
    bucket cannot be reached, created or configured (for instance when its
    name is taken by another account).
    """
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise BlobStoreUnavailable(f"S3 bucket {bucket} is not usable: {exc}") from exc
        _create_bucket(client, bucket)
    except BotoCoreError as exc:
        raise BlobStoreUnavailable(f"S3 bucket {bucket} is not reachable: {exc}") from exc
    try:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    except (BotoCoreError, ClientError) as exc:
        raise BlobStoreUnavailable(f"cannot enable versioning on {bucket}: {exc}") from exc


def _create_bucket(client: Any, bucket: str) -> None:
    params: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    region = client.meta.region_name
    if region and region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**params)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise BlobStoreUnavailable(f"cannot create S3 bucket {bucket}: {exc}") from exc
    except BotoCoreError as exc:
        raise BlobStoreUnavailable(f"cannot create S3 bucket {bucket}: {exc}") from exc


def _require_sigv4_presigning(client: Any, bucket: str) -> None:
    """Refuse a client whose presigned URLs would not be SigV4 (computed locally)."""
    try:
        probe: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "probe"}, ExpiresIn=1
        )
    except BotoCoreError:
        return  # no credentials yet: nothing can be signed, and presign will say so
    if "X-Amz-Signature=" not in probe:
        raise ValueError(
            "the S3 client presigns without SigV4; build it with "
            "botocore.config.Config(signature_version='s3v4')"
        )


def _is_missing(exc: ClientError, version_id: str | None) -> bool:
    """Whether S3 answered that this object (or this version of it) does not exist."""
    code = error_code(exc)
    if code in _NO_BUCKET_CODES:
        return False
    if code in _MISSING_CODES:
        return True
    # A version id S3 cannot parse names no version: the record points nowhere.
    if version_id is not None and code == "InvalidArgument":
        return True
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return bool(status == 404)


def _params(bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id is not None:
        params["VersionId"] = version_id
    return params


def _describe(key: str, version_id: str | None) -> str:
    return f"blob {key}" if version_id is None else f"blob {key} (version {version_id})"
