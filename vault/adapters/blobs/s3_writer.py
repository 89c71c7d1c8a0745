"""Writing one S3 object: ``PutObject`` below a part, a multipart upload above.

A writer buffers at most one part (``PART_SIZE``); the first part that
fills starts a multipart upload and leaves at once, and ``commit`` sends
what is left (as the only ``PutObject`` when nothing left before) and
completes the upload. Encryption is asked for where S3 takes it
(``PutObject`` and ``CreateMultipartUpload``; parts inherit it), and every
body carries a SHA-256 checksum. A failure aborts the upload, so no parts
are left billed in the bucket. A writer given a ``Retention`` asks for it
the same way (``ObjectLockMode`` and ``ObjectLockRetainUntilDate``, which the
upload's object inherits), so the object is locked from its first moment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from vault.domain.errors import BlobStoreUnavailable
from vault.domain.locks import Retention

__all__ = [
    "CHECKSUM_ALGORITHM", "PART_SIZE", "SSE", "MiB", "S3BlobWriter", "error_code", "lock_params",
    "whole_seconds",
]

log = structlog.get_logger("vault.blobs")

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
"""Bytes per multipart part, and the most a writer ever buffers."""
SSE = "aws:kms"
CHECKSUM_ALGORITHM = "SHA256"


class S3BlobWriter:
    """One object being written; holds at most one part of data at a time.

    Nothing is sent until the first part fills or ``commit``. After a failed
    ``write`` or ``commit`` the multipart upload (if any) has been aborted,
    or will be by ``abort``, which is always safe and never raises.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        kms_key_id: str,
        retention: Retention | None = None,
    ) -> None:
        self._client = client
        self._retention = retention
        self._bucket = bucket
        self._key = key
        self._kms_key_id = kms_key_id
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._open = True

    @property
    def buffered(self) -> int:
        """Bytes held in memory, waiting for their part to fill or for ``commit``."""
        return len(self._buffer)

    @property
    def upload_id(self) -> str | None:
        """The multipart upload in progress, if one was started and not yet finished."""
        return self._upload_id

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if not self._open:
            raise ValueError("write to a blob writer that is committed or aborted")
        view = memoryview(chunk).cast("B")
        while len(view):
            take = min(PART_SIZE - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == PART_SIZE:
                self._send_part()

    def commit(self) -> str | None:
        if not self._open:
            raise ValueError("commit of a blob writer that is committed or aborted")
        try:
            if self._upload_id is None:
                body, self._buffer = self._buffer, bytearray()
                answer = self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=body,
                    ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                    **self._encryption(),
                )
            else:
                if self._buffer:
                    self._send_part()
                answer = self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "commit")
        self._open = False
        self._upload_id = None
        self._parts = []
        version_id: str | None = answer.get("VersionId")
        # "null" is the version of an object written while versioning was off
        # (or suspended): nothing to pin, the key's only copy is current.
        return None if version_id in (None, "", "null") else version_id

    def abort(self) -> None:
        """Drop the buffer and abort the multipart upload, if one was started.

        Never raises: a failed abort is logged and tried again by the next
        call (a bucket lifecycle rule reaps what is left after that).
        """
        self._open = False
        self._buffer = bytearray()
        upload_id = self._upload_id
        if upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=upload_id
            )
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                log.warning(
                    "blob_abort_failed", storage_key=self._key, upload_id=upload_id, error=str(exc)
                )
                return
        except BotoCoreError as exc:
            log.warning(
                "blob_abort_failed", storage_key=self._key, upload_id=upload_id, error=str(exc)
            )
            return
        self._upload_id = None
        self._parts = []

    def _send_part(self) -> None:
        body, self._buffer = self._buffer, bytearray()
        try:
            if self._upload_id is None:
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                    **self._encryption(),
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "write")
        part: dict[str, Any] = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = answer["ChecksumSHA256"]
        self._parts.append(part)

    def _encryption(self) -> dict[str, Any]:
        """Encryption, and the lock when there is one: what PutObject and
        CreateMultipartUpload both take."""
        params: dict[str, Any] = {"ServerSideEncryption": SSE, "SSEKMSKeyId": self._kms_key_id}
        if self._retention is not None:
            params.update(lock_params(self._retention))
        return params

    def _fail(self, exc: BotoCoreError | ClientError, step: str) -> NoReturn:
        self.abort()
        raise BlobStoreUnavailable(f"cannot {step} blob {self._key}: {exc}") from exc


def whole_seconds(retention: Retention) -> Retention:
    """The retention with its date rounded up to a whole second, as S3 keeps it."""
    until = retention.retain_until
    if until.microsecond:
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    return Retention(retention.mode, until)


def lock_params(retention: Retention) -> dict[str, Any]:
    """``ObjectLockMode`` and ``ObjectLockRetainUntilDate`` as S3 takes them (whole seconds)."""
    return {
        "ObjectLockMode": retention.mode.value.upper(),
        "ObjectLockRetainUntilDate": whole_seconds(retention).retain_until,
    }


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# What S3 (and MinIO) answer GetObjectLockConfiguration on a bucket without Object Lock.
NO_LOCK_CODES = frozenset({"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"})


def lock_configuration(
    client: Any, bucket: str, error: Callable[[str], Exception]
) -> dict[str, Any] | None:
    """The bucket's ``ObjectLockConfiguration`` when Object Lock is enabled, else None.

    A failure to read it raises ``error(detail)``, the caller's own unavailability.
    """
    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in NO_LOCK_CODES:
            return None
        raise error(f"cannot read the Object Lock of S3 bucket {bucket}: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"S3 bucket {bucket} is not reachable: {exc}") from exc
    config: dict[str, Any] = answer.get("ObjectLockConfiguration") or {}
    return config if config.get("ObjectLockEnabled") == "Enabled" else None
