"""Disposition: listing every stored version of a key and destroying them for good.

``local_locks``, ``s3_locks`` and ``backend`` are the fixtures of
``test_blob_locks.py`` (the local store with a clock; S3 on moto's server in
a bucket with Object Lock, never dropped). Other S3 buckets here have no
Object Lock and are dropped after each test.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.vault import test_blob_locks as lock_suite
from tests.vault.blob_helpers import (
    BASE_URL,
    KEY,
    KMS_KEY_ID,
    MASTER_KEY,
    SIGNING_SECRET,
    drop_bucket,
    new_bucket,
    payload,
    s3_client,
)
from tests.vault.test_blob_locks import LockBackend, days, get, put, soon
from vault.adapters.blobs import s3_versions
from vault.adapters.blobs.local import FRAME_SIZE, LocalBlobStore, clean_stale_tmp
from vault.adapters.blobs.s3 import S3BlobStore
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable
from vault.domain.locks import LockMode, ObjectLock, Retention, StorageLocked, StoredVersion

# The lock suite's fixtures, bound here so pytest finds them in this module.
local_locks = lock_suite.local_locks
s3_locks = lock_suite.s3_locks
backend = lock_suite.backend

COMPLIANCE = LockMode.COMPLIANCE
GOVERNANCE = LockMode.GOVERNANCE


def _versions_in_bucket(client: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(key, version id) of every version and delete marker under ``prefix``, as S3 has them."""
    answer = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    items = answer.get("Versions", []) + answer.get("DeleteMarkers", [])
    return sorted((item["Key"], item["VersionId"]) for item in items)


def _bucket_of(backend: LockBackend) -> tuple[Any, str]:
    assert isinstance(backend.store, S3BlobStore)
    return backend.store._client, backend.store.bucket


# ---------------------------------------------------------------- every store


class TestEveryStore:
    def test_a_written_object_is_listed_with_its_lock(self, backend: LockBackend) -> None:
        """One version, not a delete marker, carrying the lock lock_state reports."""
        until = days(backend, 30)
        version_id = put(backend.store, b"kept", Retention(GOVERNANCE, until))

        listed = backend.store.stored_versions(KEY)

        lock = ObjectLock(version_id, GOVERNANCE, until, False)
        assert listed == [StoredVersion(version_id=version_id, delete_marker=False, lock=lock)]
        assert backend.store.lock_state(KEY, version_id) == lock

    def test_destroy_removes_it_for_good(self, backend: LockBackend) -> None:
        """Destroy returns what was listed; then nothing reads, nothing is listed, and a
        second destroy finds nothing to do."""
        version_id = put(backend.store, b"to be disposed of")
        listed = backend.store.stored_versions(KEY)

        assert backend.store.destroy(KEY) == listed
        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY, version_id)
        with pytest.raises(BlobUnreadable):
            get(backend.store)
        assert backend.store.stored_versions(KEY) == []
        assert backend.store.destroy(KEY) == []

    def test_a_key_never_written_has_nothing(self, backend: LockBackend) -> None:
        """No versions, and destroying it is harmless."""
        assert backend.store.stored_versions(KEY) == []
        assert backend.store.destroy(KEY) == []

    def test_a_retention_refuses_destroy_and_deletes_nothing(self, backend: LockBackend) -> None:
        """A compliance retention in the future is StorageLocked; the object stays, with
        its lock, still readable."""
        version_id = put(backend.store, b"retained", Retention(COMPLIANCE, days(backend, 1)))
        listed = backend.store.stored_versions(KEY)

        with pytest.raises(StorageLocked, match="until"):
            backend.store.destroy(KEY)

        assert backend.store.stored_versions(KEY) == listed
        assert get(backend.store, KEY, version_id) == b"retained"

    def test_a_legal_hold_refuses_destroy_until_lifted(self, backend: LockBackend) -> None:
        """Held, destroy is StorageLocked and deletes nothing; with the hold off it works."""
        version_id = put(backend.store, b"held")
        backend.store.set_legal_hold(KEY, version_id, True)

        with pytest.raises(StorageLocked, match="legal hold"):
            backend.store.destroy(KEY)
        assert get(backend.store, KEY, version_id) == b"held"

        backend.store.set_legal_hold(KEY, version_id, False)
        assert [v.version_id for v in backend.store.destroy(KEY)] == [version_id]
        assert backend.store.stored_versions(KEY) == []

    def test_the_store_keeps_earlier_versions(self, backend: LockBackend) -> None:
        """The local store, and an S3 bucket with Object Lock, count as versioned."""
        assert backend.store.versioning_enabled() is True


# ---------------------------------------------------------------- the local store


def _keys(root: Path) -> list[Path]:
    folder = root / "keys"
    return sorted(folder.iterdir()) if folder.exists() else []


def _object(root: Path, key: str = KEY) -> Path:
    return root / "objects" / key


def _kek(master_key: bytes = MASTER_KEY) -> AESGCM:
    info = b"document-vault data key v1"
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)
    return AESGCM(derived)


def _write_v1(root: Path, key: str, data: bytes, master_key: bytes = MASTER_KEY) -> Path:
    """An object as releases before format 2 wrote it, built from the v1 rules alone."""
    salt = os.urandom(16)
    header = b"DVB1" + salt
    info = b"document-vault blob v1"
    aead = AESGCM(
        HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master_key)
    )
    full = len(data) // FRAME_SIZE
    frames = [data[i * FRAME_SIZE : (i + 1) * FRAME_SIZE] for i in range(full)]
    frames.append(data[full * FRAME_SIZE :])  # the final, short (maybe empty) frame
    body = bytearray(header)
    for index, frame in enumerate(frames):
        nonce = index.to_bytes(11, "big") + (b"\x01" if index == full else b"\x00")
        body += aead.encrypt(nonce, frame, header + key.encode())
    path = _object(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(body))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"  # where the local_locks store keeps its files


class TestLocalFormat:
    def test_the_object_names_a_data_key_kept_outside_it(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """Header ``DVB2`` + key id; ``keys/<key id hex>`` is ``DVK1`` + nonce + the random
        data key wrapped under the master key's KEK, bound to the key id and key name;
        that data key decrypts the frames; files private."""
        put(local_locks.store, b"format two")
        data = _object(root).read_bytes()
        assert data[:4] == b"DVB2"
        key_id = data[4:20]

        (key_file,) = _keys(root)
        assert key_file.name == key_id.hex()
        wrapped = key_file.read_bytes()
        assert (len(wrapped), wrapped[:4]) == (4 + 12 + 32 + 16, b"DVK1")
        data_key = _kek().decrypt(wrapped[4:16], wrapped[16:], b"DVK1" + key_id + KEY.encode())
        frame = AESGCM(data_key).decrypt(bytes(11) + b"\x01", data[20:], data[:20] + KEY.encode())
        assert frame == b"format two"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700

    def test_a_v1_object_still_reads_and_destroy_deletes_it(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """A file in the old format (key derived from the master key) reads back, is
        listed, and destroy deletes it (there is no data key to shred)."""
        data = payload(FRAME_SIZE + 5)
        local_locks.store.ping()
        path = _write_v1(root, KEY, data)

        assert get(local_locks.store) == data
        assert len(local_locks.store.stored_versions(KEY)) == 1

        assert local_locks.store.destroy(KEY) == [StoredVersion(None, False, ObjectLock.unlocked())]
        assert not path.exists()
        assert local_locks.store.destroy(KEY) == []

    def test_a_v1_object_under_another_master_key_is_unreadable(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """The v1 reader really derives its key from the master key."""
        local_locks.store.ping()
        _write_v1(root, KEY, b"old", master_key=b"\x07" * 32)

        with pytest.raises(BlobUnreadable, match="integrity"):
            get(local_locks.store)


class TestCryptoShredding:
    def test_a_copy_kept_from_before_destroy_cannot_be_read(
        self, local_locks: LockBackend, root: Path, tmp_path: Path
    ) -> None:
        """Once destroyed, the object's file put back where it was is BlobUnreadable (its
        data key is gone), for this store and a new one with the same master key."""
        put(local_locks.store, b"confidential term sheet")
        kept = tmp_path / "backup-copy"
        shutil.copyfile(_object(root), kept)

        local_locks.store.destroy(KEY)
        assert _keys(root) == []
        assert not _object(root).exists()
        shutil.copyfile(kept, _object(root))

        with pytest.raises(BlobUnreadable, match="data key is gone"):
            get(local_locks.store)
        again = LocalBlobStore(root, MASTER_KEY, UrlSigner(SIGNING_SECRET), BASE_URL)
        with pytest.raises(BlobUnreadable, match="data key is gone"):
            get(again)

    def test_the_data_key_goes_before_the_file(
        self, local_locks: LockBackend, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Destroy unlinks the key file, then the object file, then the lock record."""
        put(local_locks.store, b"x", Retention(GOVERNANCE, soon(local_locks)))
        local_locks.pass_time(soon(local_locks))
        (key_file,) = _keys(root)
        unlinked: list[Path] = []
        real_unlink = Path.unlink

        def recording(path: Path, missing_ok: bool = False) -> None:
            unlinked.append(path)
            real_unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", recording)
        local_locks.store.destroy(KEY)

        assert unlinked == [key_file, _object(root), root / "locks" / (KEY + ".json")]

    def test_an_expired_retention_lets_destroy_through(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """Refused before the retention date on the store's clock, done after it."""
        until = days(local_locks, 1)
        put(local_locks.store, b"x", Retention(COMPLIANCE, until))
        with pytest.raises(StorageLocked):
            local_locks.store.destroy(KEY)
        assert len(_keys(root)) == 1

        local_locks.pass_time(until)
        (destroyed,) = local_locks.store.destroy(KEY)

        assert destroyed.lock == ObjectLock(None, COMPLIANCE, until, False)
        assert (_keys(root), _object(root).exists()) == ([], False)
        assert not (root / "locks" / (KEY + ".json")).exists()


class TestLocalKeyFiles:
    def test_a_damaged_key_file_is_unreadable(self, local_locks: LockBackend, root: Path) -> None:
        """A flipped bit, or a truncated key file, is BlobUnreadable saying the key is damaged."""
        put(local_locks.store, b"x")
        (key_file,) = _keys(root)
        wrapped = bytearray(key_file.read_bytes())
        wrapped[-1] ^= 0x01
        key_file.write_bytes(bytes(wrapped))

        with pytest.raises(BlobUnreadable, match="data key is damaged"):
            get(local_locks.store)
        key_file.write_bytes(bytes(wrapped[:20]))
        with pytest.raises(BlobUnreadable, match="data key is damaged"):
            get(local_locks.store)

    def test_an_object_moved_to_another_key_does_not_unwrap(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """The key file is bound to the key name: the object copied elsewhere is unreadable."""
        put(local_locks.store, b"x")
        other = KEY + "-copy"
        _object(root, other).write_bytes(_object(root).read_bytes())

        with pytest.raises(BlobUnreadable):
            get(local_locks.store, other)

    def test_an_aborted_writer_leaves_no_key_file(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """The key file exists while writing and goes with abort; no temp file is left."""
        writer = local_locks.store.open_writer(KEY)
        writer.write(b"abandoned")
        assert len(_keys(root)) == 1

        writer.abort()

        assert _keys(root) == []
        assert list((root / "tmp").iterdir()) == []

    def test_a_refused_commit_leaves_no_key_file(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """A commit refused by a lock taken meanwhile removes its key file; the locked
        object keeps its own."""
        put(local_locks.store, b"original")
        (original,) = _keys(root)
        writer = local_locks.store.open_writer(KEY)
        writer.write(b"late")
        local_locks.store.set_legal_hold(KEY, None, True)

        with pytest.raises(StorageLocked):
            writer.commit()

        assert _keys(root) == [original]
        assert get(local_locks.store) == b"original"

    def test_a_failed_commit_leaves_no_key_file(self, local_locks: LockBackend, root: Path) -> None:
        """A commit whose rename fails (the key names a folder) removes its key file."""
        _object(root, KEY + "/inner").parent.mkdir(parents=True)
        writer = local_locks.store.open_writer(KEY)
        writer.write(b"data")

        with pytest.raises(BlobStoreUnavailable):
            writer.commit()

        assert _keys(root) == []

    def test_replacing_an_object_removes_the_old_key_file(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """After a key is written twice only the new object's key file is left."""
        put(local_locks.store, b"first")
        (first,) = _keys(root)

        put(local_locks.store, b"second")

        (second,) = _keys(root)
        assert second != first
        assert get(local_locks.store) == b"second"

    def test_clean_stale_tmp_spares_a_live_writer(
        self, local_locks: LockBackend, root: Path
    ) -> None:
        """While a writer is open, cleanup removes neither its temp file nor its key file,
        and the writer commits a readable object."""
        writer = local_locks.store.open_writer(KEY)
        writer.write(b"in progress")

        assert clean_stale_tmp(root) == 0
        assert len(_keys(root)) == 1
        writer.commit()
        assert get(local_locks.store) == b"in progress"


# ---------------------------------------------------------------- S3


@pytest.fixture
def plain_s3(aws_env: str) -> Iterator[tuple[S3BlobStore, Any]]:
    """An S3 store on a versioned bucket without Object Lock, dropped afterwards."""
    client = s3_client(aws_env)
    bucket = new_bucket(client)
    try:
        yield S3BlobStore(client, bucket, KMS_KEY_ID), client
    finally:
        drop_bucket(client, bucket)
        client.close()


class TestS3Versions:
    X = "documents/x"
    NEIGHBOUR = "documents/x2"

    def _history(self, store: S3BlobStore) -> list[str | None]:
        """Three versions of X and a delete marker; a neighbour sharing its prefix."""
        written = [put(store, f"v{n}".encode(), key=self.X) for n in (1, 2, 3)]
        put(store, b"neighbour", key=self.NEIGHBOUR)
        store.delete(self.X, None)  # a delete marker on top
        return written

    def test_every_version_and_the_marker_are_listed_newest_first(
        self, plain_s3: tuple[S3BlobStore, Any]
    ) -> None:
        """Marker, v3, v2, v1, each with its own version id; the neighbour is not listed."""
        store, client = plain_s3
        v1, v2, v3 = self._history(store)

        listed = store.stored_versions(self.X)

        assert [v.version_id for v in listed[1:]] == [v3, v2, v1]
        assert [v.delete_marker for v in listed] == [True, False, False, False]
        assert all(v.lock == ObjectLock.unlocked(v.version_id) for v in listed)
        paged = s3_versions.stored_versions(
            client, store.bucket, self.X, store.lock_state, page_size=1
        )
        assert paged == listed

    def test_destroy_deletes_all_four_and_spares_the_neighbour(
        self, plain_s3: tuple[S3BlobStore, Any]
    ) -> None:
        """Nothing of the key is left in the bucket; the neighbour keeps its version."""
        store, client = plain_s3
        self._history(store)
        listed = store.stored_versions(self.X)
        neighbour = _versions_in_bucket(client, store.bucket, self.NEIGHBOUR)

        assert store.destroy(self.X) == listed

        assert len(listed) == 4
        assert _versions_in_bucket(client, store.bucket, self.X) == neighbour
        assert get(store, self.NEIGHBOUR) == b"neighbour"
        assert store.destroy(self.X) == []

    def test_versioning_suspended_is_not_enabled(self, aws_env: str) -> None:
        """A bucket never versioned, or whose versioning is suspended, answers False."""
        client = s3_client(aws_env)
        bucket = new_bucket(client, versioned=False)
        try:
            store = S3BlobStore(client, bucket, KMS_KEY_ID)
            assert store.versioning_enabled() is False
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
            assert store.versioning_enabled() is True
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}
            )
            assert store.versioning_enabled() is False
        finally:
            drop_bucket(client, bucket)
            client.close()

    def test_a_missing_bucket_is_unavailable(self, aws_env: str) -> None:
        """Every disposition method says the store is unavailable, not that nothing is there."""
        client = s3_client(aws_env)
        try:
            store = S3BlobStore(client, "vault-missing-disposal-bucket", KMS_KEY_ID)
            with pytest.raises(BlobStoreUnavailable):
                store.versioning_enabled()
            with pytest.raises(BlobStoreUnavailable):
                store.stored_versions(KEY)
            with pytest.raises(BlobStoreUnavailable):
                store.destroy(KEY)
        finally:
            client.close()


class TestS3Locked:
    def test_a_retained_version_keeps_every_version(self, s3_locks: LockBackend) -> None:
        """An older unlocked version and a newer retained one: StorageLocked naming the
        retained version, and both are still in the bucket."""
        client, bucket = _bucket_of(s3_locks)
        older = put(s3_locks.store, b"older")
        retained = put(s3_locks.store, b"retained", Retention(COMPLIANCE, days(s3_locks, 1)))
        before = _versions_in_bucket(client, bucket, KEY)

        with pytest.raises(StorageLocked, match=f"version {retained}"):
            s3_locks.store.destroy(KEY)

        assert _versions_in_bucket(client, bucket, KEY) == before
        assert len(before) == 2
        assert get(s3_locks.store, KEY, older) == b"older"

    def test_a_held_version_keeps_every_version_until_released(self, s3_locks: LockBackend) -> None:
        """A hold on the older version refuses destroy (the newer one stays too); released,
        destroy deletes both, never asking for a governance bypass."""
        client, bucket = _bucket_of(s3_locks)
        held = put(s3_locks.store, b"held")
        put(s3_locks.store, b"newer")
        s3_locks.store.set_legal_hold(KEY, held, True)

        with pytest.raises(StorageLocked, match=f"version {held} is under a legal hold"):
            s3_locks.store.destroy(KEY)
        assert len(_versions_in_bucket(client, bucket, KEY)) == 2

        s3_locks.store.set_legal_hold(KEY, held, False)
        assert len(s3_locks.store.destroy(KEY)) == 2
        assert _versions_in_bucket(client, bucket, KEY) == []
        deletes = [p for name, p in s3_locks.calls if name == "DeleteObject"]
        assert len(deletes) == 2
        assert all(p.get("VersionId") for p in deletes)
        assert not any("BypassGovernanceRetention" in p for _, p in s3_locks.calls)


class _Client:
    """Just enough of an S3 client: one unlocked version, whose delete is refused."""

    def list_object_versions(self, **params: Any) -> dict[str, Any]:
        when = lock_suite.days_ahead(0)
        versions = [{"Key": KEY, "VersionId": "v1", "LastModified": when, "IsLatest": True}]
        return {"Versions": versions, "IsTruncated": False}

    def delete_object(self, **params: Any) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise ClientError(error, "DeleteObject")


class TestS3Races:
    def test_a_lock_set_after_the_check_is_storage_locked(self) -> None:
        """S3's AccessDenied for a version locked between the check and the delete is
        StorageLocked, once its lock confirms it."""
        locks = iter([ObjectLock.unlocked("v1"), ObjectLock("v1", None, None, True)])

        with pytest.raises(StorageLocked, match="meanwhile"):
            s3_versions.destroy(_Client(), "bucket", KEY, lambda key, version: next(locks))

    def test_access_denied_without_a_lock_is_unavailable(self) -> None:
        """An AccessDenied that no lock explains (permissions) is BlobStoreUnavailable."""
        with pytest.raises(BlobStoreUnavailable, match="AccessDenied"):
            s3_versions.destroy(
                _Client(), "bucket", KEY, lambda key, version: ObjectLock.unlocked(version)
            )


def test_retention_dates_are_compared_with_now() -> None:
    """The S3 check uses the current time: a retention that ended a second ago blocks nothing."""
    ended = ObjectLock("v1", COMPLIANCE, lock_suite.days_ahead(0) - timedelta(seconds=1), False)
    client = _Client()
    client.delete_object = lambda **params: None  # type: ignore[method-assign]

    assert s3_versions.destroy(client, "bucket", KEY, lambda key, version: ended) == [
        StoredVersion("v1", False, ended)
    ]
