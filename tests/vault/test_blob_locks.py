"""Retention locks and legal holds, enforced by the blob stores themselves.

``local`` is the encrypted file store with an injected clock; ``s3`` is the
S3 store on moto's server with a bucket created with Object Lock (such a
bucket is never dropped: its objects are locked; moto keeps it until the
session ends). A bucket without Object Lock is tested on its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.polling import eventually_sync
from tests.vault.blob_helpers import (
    BASE_URL,
    KEY,
    KMS_KEY_ID,
    MASTER_KEY,
    SIGNING_SECRET,
    new_bucket,
    payload,
    s3_client,
)
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.blobs.s3 import S3BlobStore
from vault.adapters.blobs.s3_writer import PART_SIZE
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import BlobStoreUnavailable, BlobUnreadable, VaultError
from vault.domain.locks import LockMode, ObjectLock, Retention, StorageLocked, stronger
from vault.ports import BlobStore

COMPLIANCE = LockMode.COMPLIANCE
GOVERNANCE = LockMode.GOVERNANCE


def _second(value: datetime) -> datetime:
    """A whole second (what S3 keeps), so dates compare exactly on both backends."""
    return value.replace(microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.now = _second(datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@attrs.frozen
class LockBackend:
    name: str
    store: BlobStore
    now: Callable[[], datetime]
    """The time the storage compares retention dates with."""
    pass_time: Callable[[datetime], None]
    """Return once the storage's time is past the given date."""
    calls: list[tuple[str, dict[str, Any]]]
    """S3 operations sent (none are recorded for the local store)."""


@pytest.fixture
def local_locks(tmp_path: Path) -> LockBackend:
    clock = Clock()
    store = LocalBlobStore(
        tmp_path / "blobs", MASTER_KEY, UrlSigner(SIGNING_SECRET), BASE_URL, clock=clock
    )

    def pass_time(until: datetime) -> None:
        clock.now = until + timedelta(seconds=1)

    return LockBackend("local", store, clock, pass_time, [])


def _recording(client: Any) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.s3.*", record)
    return calls


def locked_bucket(client: Any) -> str:
    name = f"vault-lock-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def s3_locks(aws_env: str) -> Iterator[LockBackend]:
    client = s3_client(aws_env)
    calls = _recording(client)
    store = S3BlobStore(client, locked_bucket(client), KMS_KEY_ID)

    def pass_time(until: datetime) -> None:
        eventually_sync(
            lambda: datetime.now(UTC) > until + timedelta(milliseconds=200),
            f"the clock to pass {until}",
        )

    try:
        yield LockBackend("s3", store, lambda: datetime.now(UTC), pass_time, calls)
    finally:
        client.close()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> LockBackend:
    result: LockBackend = request.getfixturevalue(f"{request.param}_locks")
    return result


def put(store: BlobStore, data: bytes, retention: Retention | None = None, key: str = KEY) -> (
    str | None
):
    writer = store.open_writer(key, retention)
    writer.write(data)
    return writer.commit()


def get(store: BlobStore, key: str = KEY, version_id: str | None = None) -> bytes:
    return b"".join(store.read(key, version_id))


def days(backend: LockBackend, n: int) -> datetime:
    return _second(backend.now()) + timedelta(days=n)


def soon(backend: LockBackend) -> datetime:
    """A retention date a couple of seconds ahead: short enough to wait out on S3."""
    return _second(backend.now()) + timedelta(seconds=2)


# ---------------------------------------------------------------- the domain


class TestDomain:
    NOW = datetime(2030, 1, 1, tzinfo=UTC)

    def test_stronger_takes_the_later_date_and_the_stronger_mode(self) -> None:
        """Neither the date nor the mode ever goes down, whichever side holds the stronger."""
        early, late = self.NOW, self.NOW + timedelta(days=1)
        assert stronger(None, Retention(GOVERNANCE, early)) == Retention(GOVERNANCE, early)
        assert stronger(Retention(GOVERNANCE, late), Retention(GOVERNANCE, early)) == Retention(
            GOVERNANCE, late
        )
        assert stronger(Retention(COMPLIANCE, early), Retention(GOVERNANCE, late)) == Retention(
            COMPLIANCE, late
        )
        assert stronger(Retention(GOVERNANCE, late), Retention(COMPLIANCE, early)) == Retention(
            COMPLIANCE, late
        )

    def test_blocks_deletion_while_held_or_retained(self) -> None:
        """A hold blocks whatever the date; a retention blocks strictly before its date."""
        until = self.NOW + timedelta(seconds=1)
        retained = ObjectLock(None, GOVERNANCE, until, False)
        assert retained.blocks_deletion(self.NOW)
        assert not retained.blocks_deletion(until)
        assert ObjectLock(None, None, None, True).blocks_deletion(until + timedelta(days=9))
        assert not ObjectLock.unlocked().blocks_deletion(self.NOW)

    def test_dates_must_be_aware_and_are_kept_in_utc(self) -> None:
        """A naive date is refused; another offset is converted to UTC."""
        with pytest.raises(ValueError):
            Retention(COMPLIANCE, datetime(2030, 1, 1))
        plus_two = datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
        kept = Retention(COMPLIANCE, plus_two).retain_until
        assert (kept.tzinfo, kept) == (UTC, datetime(2030, 1, 1, tzinfo=UTC))

    def test_storage_locked_is_a_409(self) -> None:
        error = StorageLocked("held")
        assert isinstance(error, VaultError)
        assert (error.status, error.error_code, error.title) == (
            409, "STORAGE_LOCKED", "Storage Locked",
        )


# ---------------------------------------------------------------- every store


class TestLocks:
    def test_a_retention_written_with_the_object_is_its_lock(
        self, backend: LockBackend
    ) -> None:
        """Written with a retention, the object reports that retention and no hold, for the
        version the commit returned (and as the current object)."""
        until = days(backend, 30)

        version_id = put(backend.store, b"locked", Retention(GOVERNANCE, until))

        lock = backend.store.lock_state(KEY, version_id)
        assert lock == ObjectLock(version_id, GOVERNANCE, until, False)
        assert backend.store.lock_state(KEY, None) == lock
        assert get(backend.store) == b"locked"

    def test_an_object_written_without_a_lock_has_none(self, backend: LockBackend) -> None:
        """No retention and no hold; nothing blocks its deletion, which then succeeds."""
        version_id = put(backend.store, b"plain")

        lock = backend.store.lock_state(KEY, version_id)

        assert lock == ObjectLock.unlocked(version_id)
        assert not lock.blocks_deletion(backend.now())
        backend.store.delete(KEY, version_id)
        with pytest.raises(BlobUnreadable):
            get(backend.store)

    def test_the_lock_of_a_missing_object_is_unreadable(self, backend: LockBackend) -> None:
        """As for ``read``: a key never written is BlobUnreadable, for its lock and changes."""
        with pytest.raises(BlobUnreadable):
            backend.store.lock_state(KEY, None)
        with pytest.raises(BlobUnreadable):
            backend.store.extend_retention(KEY, None, Retention(COMPLIANCE, days(backend, 1)))
        with pytest.raises(BlobUnreadable):
            backend.store.set_legal_hold(KEY, None, True)

    def test_delete_is_refused_while_retained_and_allowed_after(
        self, backend: LockBackend
    ) -> None:
        """Deleting a retained object, by its version or as the current one, is StorageLocked
        and the object stays readable; once its date has passed, the delete goes through."""
        until = soon(backend)
        version_id = put(backend.store, b"kept", Retention(COMPLIANCE, until))

        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, version_id)
        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, None)
        assert get(backend.store) == b"kept"
        assert get(backend.store, KEY, version_id) == b"kept"

        backend.pass_time(until)
        assert not backend.store.lock_state(KEY, version_id).blocks_deletion(backend.now())
        backend.store.delete(KEY, version_id)
        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY, version_id)

    def test_extend_lengthens_and_a_shorter_ask_keeps_the_later_date(
        self, backend: LockBackend
    ) -> None:
        """A later date replaces the current one; an earlier one changes nothing."""
        version_id = put(backend.store, b"x", Retention(GOVERNANCE, days(backend, 10)))

        longer = backend.store.extend_retention(
            KEY, version_id, Retention(GOVERNANCE, days(backend, 20))
        )
        shorter = backend.store.extend_retention(
            KEY, version_id, Retention(GOVERNANCE, days(backend, 5))
        )

        expected = ObjectLock(version_id, GOVERNANCE, days(backend, 20), False)
        assert longer == expected
        assert shorter == expected
        assert backend.store.lock_state(KEY, version_id) == expected

    def test_governance_becomes_compliance_and_compliance_stays(
        self, backend: LockBackend
    ) -> None:
        """Asking compliance strengthens a governance lock; asking governance of a
        compliance lock (even with a later date) keeps compliance, with the later date."""
        version_id = put(backend.store, b"x", Retention(GOVERNANCE, days(backend, 10)))

        strengthened = backend.store.extend_retention(
            KEY, version_id, Retention(COMPLIANCE, days(backend, 10))
        )
        assert (strengthened.mode, strengthened.retain_until) == (COMPLIANCE, days(backend, 10))

        kept = backend.store.extend_retention(
            KEY, version_id, Retention(GOVERNANCE, days(backend, 15))
        )
        assert (kept.mode, kept.retain_until) == (COMPLIANCE, days(backend, 15))
        assert backend.store.lock_state(KEY, version_id) == kept

    def test_extend_locks_an_unlocked_object(self, backend: LockBackend) -> None:
        """An object written without a lock gets the retention asked, and its deletion is
        then refused."""
        version_id = put(backend.store, b"x")

        lock = backend.store.extend_retention(
            KEY, version_id, Retention(GOVERNANCE, days(backend, 1))
        )

        assert lock == ObjectLock(version_id, GOVERNANCE, days(backend, 1), False)
        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, version_id)

    def test_a_legal_hold_blocks_deletion_until_lifted(self, backend: LockBackend) -> None:
        """With a hold and no retention the delete is refused; once the hold is off it
        goes through."""
        version_id = put(backend.store, b"held")

        on = backend.store.set_legal_hold(KEY, version_id, True)
        assert on == ObjectLock(version_id, None, None, True)
        assert backend.store.lock_state(KEY, version_id) == on
        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, version_id)
        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, None)
        assert get(backend.store) == b"held"

        off = backend.store.set_legal_hold(KEY, version_id, False)
        assert off == ObjectLock.unlocked(version_id)
        assert backend.store.lock_state(KEY, version_id) == off
        backend.store.delete(KEY, version_id)
        with pytest.raises(BlobUnreadable):
            get(backend.store, KEY, version_id)

    def test_a_hold_outlasts_its_retention(self, backend: LockBackend) -> None:
        """A hold keeps blocking after the retention beside it has run out."""
        until = soon(backend)
        version_id = put(backend.store, b"x", Retention(GOVERNANCE, until))
        backend.store.set_legal_hold(KEY, version_id, True)

        backend.pass_time(until)

        assert backend.store.lock_state(KEY, version_id) == ObjectLock(
            version_id, GOVERNANCE, until, True
        )
        with pytest.raises(StorageLocked):
            backend.store.delete(KEY, version_id)

    def test_the_store_enforces_its_locks(self, backend: LockBackend) -> None:
        """Both stores under test enforce locks: the local one always, S3 with Object Lock."""
        assert backend.store.object_lock_enabled() is True


# ---------------------------------------------------------------- the local store


class TestLocal:
    def test_replacing_a_locked_key_is_refused(self, local_locks: LockBackend) -> None:
        """open_writer refuses while the object is held; lifted, the key can be rewritten,
        and the new object starts with no lock."""
        store = local_locks.store
        put(store, b"original")
        store.set_legal_hold(KEY, None, True)

        with pytest.raises(StorageLocked):
            store.open_writer(KEY)

        store.set_legal_hold(KEY, None, False)
        store.extend_retention(KEY, None, Retention(GOVERNANCE, soon(local_locks)))
        local_locks.pass_time(soon(local_locks))
        put(store, b"replacement")
        assert get(store) == b"replacement"
        assert store.lock_state(KEY, None) == ObjectLock.unlocked()

    def test_a_lock_taken_while_writing_refuses_the_commit(
        self, local_locks: LockBackend, tmp_path: Path
    ) -> None:
        """A writer opened before the object was locked fails at commit, leaving the locked
        object and no temp file."""
        store = local_locks.store
        put(store, b"original")
        writer = store.open_writer(KEY)
        writer.write(b"late replacement")
        store.extend_retention(KEY, None, Retention(COMPLIANCE, soon(local_locks)))

        with pytest.raises(StorageLocked):
            writer.commit()

        assert get(store) == b"original"
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []

    def test_the_lock_lives_beside_the_object_and_goes_with_it(
        self, local_locks: LockBackend, tmp_path: Path
    ) -> None:
        """The sidecar is under ``locks/``, never listed as an object, and deleting the
        (expired) object removes it too."""
        store = local_locks.store
        until = soon(local_locks)
        put(store, b"x", Retention(GOVERNANCE, until))
        sidecar = tmp_path / "blobs" / "locks" / (KEY + ".json")

        assert json.loads(sidecar.read_text()) == {
            "mode": "governance", "retain_until": until.isoformat(), "legal_hold": False,
        }
        assert [o.key for page in store.list_objects("") for o in page] == [KEY]

        local_locks.pass_time(until)
        store.delete(KEY, None)
        assert not sidecar.exists()

    def test_a_damaged_lock_record_fails_closed(
        self, local_locks: LockBackend, tmp_path: Path
    ) -> None:
        """A sidecar that cannot be parsed is BlobStoreUnavailable: nothing is deleted."""
        store = local_locks.store
        put(store, b"x", Retention(GOVERNANCE, soon(local_locks)))
        (tmp_path / "blobs" / "locks" / (KEY + ".json")).write_text("{not json")

        with pytest.raises(BlobStoreUnavailable):
            store.delete(KEY, None)
        assert get(store) == b"x"

    def test_a_retention_is_compared_with_the_store_clock(self, local_locks: LockBackend) -> None:
        """The injected clock decides: one second before the date it blocks, at it not."""
        store = local_locks.store
        until = days(local_locks, 1)
        put(store, b"x", Retention(COMPLIANCE, until))

        local_locks.pass_time(until - timedelta(seconds=2))
        with pytest.raises(StorageLocked):
            store.delete(KEY, None)
        local_locks.pass_time(until - timedelta(seconds=1))
        store.delete(KEY, None)


# ---------------------------------------------------------------- S3


class TestS3:
    def test_a_new_version_leaves_the_locked_one(self, s3_locks: LockBackend) -> None:
        """On S3 a key can be rewritten; the locked version stays, refusing its delete."""
        store = s3_locks.store
        locked = put(store, b"locked", Retention(COMPLIANCE, days(s3_locks, 1)))

        newer = put(store, b"newer")

        assert get(store) == b"newer"
        assert store.lock_state(KEY, newer) == ObjectLock.unlocked(newer)
        with pytest.raises(StorageLocked):
            store.delete(KEY, locked)
        assert get(store, KEY, locked) == b"locked"

    def test_a_multipart_write_asks_for_the_lock(self, s3_locks: LockBackend) -> None:
        """A write past one part asks for the lock on CreateMultipartUpload (which S3
        applies to the completed object; moto 5.2 ignores it there, so what is checked is
        the request) and nowhere else."""
        until = days(s3_locks, 30)

        put(s3_locks.store, payload(PART_SIZE + 1), Retention(COMPLIANCE, until))

        (created,) = [p for name, p in s3_locks.calls if name == "CreateMultipartUpload"]
        assert (created["ObjectLockMode"], created["ObjectLockRetainUntilDate"]) == (
            "COMPLIANCE", until,
        )
        assert created["SSEKMSKeyId"] == KMS_KEY_ID
        others = [p for name, p in s3_locks.calls if name in ("UploadPart", "PutObject")]
        assert others and not any("ObjectLockMode" in p for p in others)

    def test_locks_are_sent_as_s3_takes_them_and_never_bypassed(
        self, s3_locks: LockBackend
    ) -> None:
        """The write carries ObjectLockMode and a whole-second date (rounded up); an extend
        that changes nothing sends no PutObjectRetention; no delete asks for a bypass."""
        store = s3_locks.store
        asked = days(s3_locks, 1) + timedelta(microseconds=250_000)
        version_id = put(store, b"x", Retention(GOVERNANCE, asked))
        (params,) = [p for name, p in s3_locks.calls if name == "PutObject"]
        assert params["ObjectLockMode"] == "GOVERNANCE"
        assert params["ObjectLockRetainUntilDate"] == days(s3_locks, 1) + timedelta(seconds=1)

        store.extend_retention(KEY, version_id, Retention(GOVERNANCE, days(s3_locks, 1)))
        with pytest.raises(StorageLocked):
            store.delete(KEY, version_id)

        names = [name for name, _ in s3_locks.calls]
        assert "PutObjectRetention" not in names
        assert not any("BypassGovernanceRetention" in p for _, p in s3_locks.calls)

    def test_a_bucket_without_object_lock(self, aws_env: str) -> None:
        """object_lock_enabled is False; locking is BlobStoreUnavailable naming the missing
        Object Lock, and a write with a retention fails without leaving an object."""
        client = s3_client(aws_env)
        try:
            store = S3BlobStore(client, new_bucket(client), KMS_KEY_ID)
            version_id = put(store, b"x")

            assert store.object_lock_enabled() is False
            with pytest.raises(BlobStoreUnavailable, match="has no Object Lock"):
                store.extend_retention(KEY, version_id, Retention(GOVERNANCE, days_ahead(1)))
            with pytest.raises(BlobStoreUnavailable, match="has no Object Lock"):
                store.set_legal_hold(KEY, version_id, True)
            with pytest.raises(BlobStoreUnavailable):
                put(store, b"y", Retention(GOVERNANCE, days_ahead(1)), key=KEY + "-locked")
            assert store.lock_state(KEY, version_id) == ObjectLock.unlocked(version_id)
            with pytest.raises(BlobUnreadable):
                get(store, KEY + "-locked")
        finally:
            client.close()

    def test_an_unreachable_store_is_unavailable(self, aws_env: str) -> None:
        """A missing bucket is BlobStoreUnavailable for every lock method, not a lock answer."""
        client = s3_client(aws_env)
        try:
            store = S3BlobStore(client, f"vault-missing-{uuid.uuid4().hex[:12]}", KMS_KEY_ID)
            with pytest.raises(BlobStoreUnavailable):
                store.object_lock_enabled()
            with pytest.raises(BlobStoreUnavailable):
                store.set_legal_hold(KEY, None, True)
        finally:
            client.close()


def days_ahead(n: int) -> datetime:
    return _second(datetime.now(UTC)) + timedelta(days=n)
