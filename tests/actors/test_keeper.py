"""The retention keeper end to end: the records change, the object's own lock follows.

Every actor runs on SQLite, with the embedded blob store or the S3 store on
moto's server with an Object Lock bucket. A policy, holds and a lengthened
policy are set through ``vault.records`` (as the routes do); the test reads
the lock back from the object store itself.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from actors.records import ObjectLockMissing, require_object_lock
from actors.system import Sizing, Vault, run_vault
from tests.actors.helpers import a_user, store_document, upload_form
from tests.actors.outside_helpers import running_vault
from tests.polling import eventually
from tests.support import pdf_bytes, test_settings
from tests.vault.blob_helpers import KMS_KEY_ID, s3_client
from vault.adapters.blobs.s3 import S3BlobStore
from vault.domain.holds import ItemChange, NewHold
from vault.domain.locks import LockMode, ObjectLock, StorageLocked
from vault.domain.models import Document, DocumentType, Role
from vault.domain.retention import OnExpiry, Period, PolicyRequest, RetentionMode
from vault.ports import BlobStore
from vault_http.serve import build_backends

ADMIN = a_user(Role.ADMIN)
OFFICER = a_user(Role.COMPLIANCE_OFFICER)


def locked_bucket(endpoint: str) -> S3BlobStore:
    client = s3_client(endpoint)
    name = f"vault-keeper-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return S3BlobStore(client, name, KMS_KEY_ID)


@pytest.fixture(params=["local", "s3"])
async def vault(
    request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Vault]:
    blobs: BlobStore | None = None
    if request.param == "s3":
        endpoint = request.getfixturevalue("aws_env")
        blobs = await trio.to_thread.run_sync(locked_bucket, endpoint)
    async with running_vault(nursery, test_settings(tmp_path / "data"), blobs=blobs) as vault:
        yield vault


async def lock_of(vault: Vault, doc: Document) -> ObjectLock:
    blobs = vault.backends.blobs
    return await vault.backends.in_blobs(blobs.lock_state, doc.storage_key,
                                         doc.storage_version_id)


def keeper(vault: Vault) -> dict[str, Any]:
    status: dict[str, Any] = vault.archiver.health.snapshot()["keeper"]
    return status


async def worked_off(vault: Vault, applied_before: int) -> None:
    """Until the keeper applied something more and its queue is empty."""
    await eventually(
        lambda: keeper(vault)["applied"] > applied_before and keeper(vault)["backlog"] == 0,
        "the keeper to work its queue off",
    )


async def until_lock(
    vault: Vault, doc: Document, what: str, *, until_at_least: datetime | None = None,
    **expected: Any,
) -> ObjectLock:
    async def matches() -> ObjectLock | None:
        lock = await lock_of(vault, doc)
        if until_at_least is not None and (
            lock.retain_until is None or lock.retain_until < until_at_least
        ):
            return None
        return lock if all(getattr(lock, k) == v for k, v in expected.items()) else None

    found: ObjectLock = await eventually(matches, what)  # type: ignore[arg-type]
    return found


def six_years(period: str = "P6Y") -> PolicyRequest:
    return PolicyRequest(Period.parse(period), RetentionMode.COMPLIANCE, OnExpiry.REVIEW)


def hold_on(entity_id: uuid.UUID) -> NewHold:
    return NewHold(name="inquiry", matter="m", reason="subpoena", custodian="legal",
                   document_ids=(), entity_ids=(entity_id,))


def retain_until(doc: Document, years: int) -> datetime:
    return doc.created_at.replace(year=doc.created_at.year + years)


async def test_a_policy_locks_new_objects_and_a_longer_one_lengthens_them(
    vault: Vault,
) -> None:
    records = vault.records
    await records.put_policy(DocumentType.KYC, six_years(), ADMIN, None)
    form = attrs.evolve(upload_form(), document_type=DocumentType.KYC)
    doc = await store_document(vault, pdf_bytes(3000), form)
    lock = await until_lock(vault, doc, "the upload's lock", mode=LockMode.COMPLIANCE,
                            until_at_least=retain_until(doc, 6))
    # The record's date, rounded up to a whole second (S3 keeps whole seconds).
    assert lock.retain_until is not None
    assert lock.retain_until < retain_until(doc, 6) + timedelta(seconds=1)
    blobs = vault.backends.blobs
    with pytest.raises(StorageLocked):
        await vault.backends.in_blobs(blobs.delete, doc.storage_key, doc.storage_version_id)

    await records.put_policy(DocumentType.KYC, six_years("P7Y"), ADMIN, None)
    longer = await until_lock(vault, doc, "the lengthened lock", mode=LockMode.COMPLIANCE,
                              until_at_least=retain_until(doc, 7))
    view = await records.retention_of(doc.id)
    assert view.storage.retain_until == longer.retain_until
    assert view.blocked_by == ["retention"]


async def test_two_holds_keep_the_flag_until_both_are_released(vault: Vault) -> None:
    records = vault.records
    form = upload_form()
    doc = await store_document(vault, pdf_bytes(2000), form)
    assert not (await lock_of(vault, doc)).legal_hold
    first = await records.create_hold(hold_on(doc.entity_id), OFFICER, None)
    second = await records.create_hold(hold_on(doc.entity_id), OFFICER, None)
    await until_lock(vault, doc, "the hold on", legal_hold=True)
    # A document the held entity uploads later is held as it lands.
    later = await store_document(vault, pdf_bytes(2100), upload_form(form.entity_id))
    await until_lock(vault, later, "the later upload held", legal_hold=True)

    applied = keeper(vault)["applied"]
    await records.release(first.hold_id, "settled", OFFICER, None)
    await worked_off(vault, applied)
    assert (await lock_of(vault, doc)).legal_hold  # the second still holds it
    await records.release(second.hold_id, "closed", OFFICER, None)
    await until_lock(vault, doc, "the hold off", legal_hold=False)
    await until_lock(vault, later, "the later one's off", legal_hold=False)


async def test_removing_a_document_from_a_hold_lifts_its_flag(vault: Vault) -> None:
    records = vault.records
    doc = await store_document(vault, pdf_bytes(2000), upload_form())
    new = attrs.evolve(hold_on(doc.entity_id), entity_ids=(), document_ids=(doc.id,))
    made = await records.create_hold(new, OFFICER, None)
    await until_lock(vault, doc, "the hold on", legal_hold=True)
    await records.change_items(made.hold_id, ItemChange((doc.id,), (), "out of scope"),
                               add=False, actor=OFFICER, correlation_id=None)
    await until_lock(vault, doc, "the hold off", legal_hold=False)
    assert (await records.retention_of(doc.id)).blocked_by == []


async def test_a_bucket_without_object_lock_fails_readiness_and_start_up(
    tmp_path: Path, nursery: trio.Nursery, aws_env: str
) -> None:
    """Nothing asks for a lock before a policy exists; then readiness says why not, and a
    compliance policy stops start-up."""
    settings = test_settings(tmp_path / "data")
    backends, _ = await trio.to_thread.run_sync(build_backends, settings)

    def plain_bucket() -> S3BlobStore:
        client = s3_client(aws_env)
        name = f"vault-plain-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name)
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return S3BlobStore(client, name, KMS_KEY_ID)

    backends = attrs.evolve(backends, blobs=await trio.to_thread.run_sync(plain_bucket))
    await trio.to_thread.run_sync(require_object_lock, backends)  # no policy yet: fine
    running: Vault = await nursery.start(run_vault, backends, Sizing())
    try:
        assert (await running.reads.readiness())["object_lock"] == "ok"
        await running.records.put_policy(
            DocumentType.KYC,
            PolicyRequest(Period.parse("P6Y"), RetentionMode.GOVERNANCE, OnExpiry.REVIEW),
            ADMIN, None,
        )
        checks = await running.reads.readiness()
        assert "no Object Lock" in checks["object_lock"] and "governance" in checks["object_lock"]
        await trio.to_thread.run_sync(require_object_lock, backends)  # governance: starts
        await running.records.put_policy(DocumentType.KYC, six_years(), ADMIN, None)
        with pytest.raises(ObjectLockMissing, match="compliance"):
            await trio.to_thread.run_sync(require_object_lock, backends)
    finally:
        await running.stop(5)
        await trio.to_thread.run_sync(backends.store.close)


async def test_readiness_fails_while_the_buckets_versioning_is_suspended(
    tmp_path: Path, nursery: trio.Nursery, aws_env: str
) -> None:
    """Versioning suspended: a write could take a locked object's place, and a disposition
    could miss versions; readiness says so until it is enabled again."""
    settings = test_settings(tmp_path / "data")
    backends, _ = await trio.to_thread.run_sync(build_backends, settings)
    client = s3_client(aws_env)
    name = f"vault-plain-{uuid.uuid4().hex[:12]}"

    def versioning(status: str) -> None:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})

    await trio.to_thread.run_sync(lambda: client.create_bucket(Bucket=name))
    await trio.to_thread.run_sync(versioning, "Enabled")
    backends = attrs.evolve(backends, blobs=S3BlobStore(client, name, KMS_KEY_ID))
    running: Vault = await nursery.start(run_vault, backends, Sizing())
    try:
        assert (await running.reads.readiness())["versioning"] == "ok"
        await trio.to_thread.run_sync(versioning, "Suspended")
        said = (await running.reads.readiness())["versioning"]
        assert said == f"versioning is not enabled on the object store {name}"
        await trio.to_thread.run_sync(versioning, "Enabled")
        assert (await running.reads.readiness())["versioning"] == "ok"
    finally:
        await running.stop(5)
        await trio.to_thread.run_sync(backends.store.close)
