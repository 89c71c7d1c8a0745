"""Every stored version of one S3 key, and its disposition: what ``S3BlobStore`` lists
and destroys.

``stored_versions`` pages through ``ListObjectVersions`` with the key as
prefix and keeps the entries whose key is exactly it (the prefix also
matches ``documents/abc-2``). Keys are listed in order and a key sorts
before every longer key it is a prefix of, so the listing stops at the
first page that reaches another key. Each version's lock comes from the
store's ``lock_state`` (one ``HeadObject`` each); a delete marker has none.

``destroy`` checks every lock before it deletes anything, then deletes
each version and delete marker by its version id, never with a governance
bypass. S3 enforces the locks itself, so a lock set between the check and
a delete is an ``AccessDenied``, told as ``StorageLocked`` once the
version's lock confirms it (the versions before it are gone by then).

Errors: botocore's exceptions become ``BlobStoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vault.adapters.blobs.s3_writer import error_code
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import ObjectLock, StorageLocked, StoredVersion
from vault.domain.models import utcnow

LockOf = Callable[[str, str], ObjectLock]
"""The store's ``lock_state``: the lock of one version of a key."""

# What DeleteObject answers for a version that is already gone.
_GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})


def versioning_enabled(client: Any, bucket: str) -> bool:
    """Whether the bucket's versioning is ``Enabled`` (not never set, not ``Suspended``)."""
    try:
        answer = client.get_bucket_versioning(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        raise BlobStoreUnavailable(f"cannot read the versioning of {bucket}: {exc}") from exc
    return bool(answer.get("Status") == "Enabled")


def stored_versions(
    client: Any, bucket: str, key: str, lock_of: LockOf, *, page_size: int = 1000
) -> list[StoredVersion]:
    """Every version and delete marker of exactly ``key``, newest first; ``[]`` when none.

    Newest is the latest ``LastModified``, then S3's ``IsLatest``. A version
    deleted while it is listed is left out. ``version_id`` is S3's own, so
    an unversioned write is ``"null"`` (its lock, as ``lock_state`` says, None).
    """
    entries: list[tuple[datetime, bool, StoredVersion]] = []
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": key, "MaxKeys": page_size}
    while True:
        try:
            answer = client.list_object_versions(**params)
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreUnavailable(f"cannot list the versions of {key}: {exc}") from exc
        listed = [(item, False) for item in answer.get("Versions", ())]
        listed += [(item, True) for item in answer.get("DeleteMarkers", ())]
        for item, marker in listed:
            if item["Key"] != key:
                continue
            version_id = str(item["VersionId"])
            if marker:
                lock = ObjectLock.unlocked(version_id)
            else:
                try:
                    lock = lock_of(key, version_id)
                except BlobUnreadable:
                    continue  # deleted since it was listed
            found = StoredVersion(version_id=version_id, delete_marker=marker, lock=lock)
            entries.append((item["LastModified"], bool(item.get("IsLatest")), found))
        if any(item["Key"] != key for item, _ in listed):
            break  # past the key: the rest of the prefix holds longer keys only
        if not answer.get("IsTruncated"):
            break
        params["KeyMarker"] = answer.get("NextKeyMarker")
        params["VersionIdMarker"] = answer.get("NextVersionIdMarker")
    entries.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [version for _, _, version in entries]


def destroy(client: Any, bucket: str, key: str, lock_of: LockOf) -> list[StoredVersion]:
    """Delete every version and delete marker of ``key``; returns them (``[]``: none).

    ``StorageLocked`` naming the first locked version, before anything is
    deleted, when one blocks deletion now; and for an ``AccessDenied`` on a
    version whose lock then blocks it.
    """
    versions = stored_versions(client, bucket, key, lock_of)
    now = utcnow()
    for version in versions:
        if version.lock.blocks_deletion(now):
            raise StorageLocked(
                f"cannot destroy blob {key}: version {version.version_id} is under "
                f"{_held(version.lock)}; nothing was deleted"
            )
    for done, version in enumerate(versions):
        assert version.version_id is not None  # S3 lists every version with its id
        where = f"blob {key} (version {version.version_id})"
        try:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version.version_id)
        except ClientError as exc:
            code = error_code(exc)
            if code in _GONE_CODES:
                continue
            if code == "AccessDenied":
                _refuse_if_locked(key, version.version_id, lock_of, where, done)
            raise BlobStoreUnavailable(f"cannot destroy {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"cannot destroy {where}: {exc}") from exc
    return versions


def _refuse_if_locked(key: str, version_id: str, lock_of: LockOf, where: str, done: int) -> None:
    try:
        lock = lock_of(key, version_id)
    except BlobUnreadable:
        return  # gone after all: the AccessDenied was about something else
    if lock.blocks_deletion(utcnow()):
        raise StorageLocked(
            f"cannot destroy {where}: it was put under {_held(lock)} meanwhile; "
            f"{done} newer version(s) were already deleted"
        )


def _held(lock: ObjectLock) -> str:
    return "a legal hold" if lock.legal_hold else f"retention until {lock.retain_until}"
