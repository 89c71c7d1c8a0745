"""Disposition end to end on the embedded store and on S3 (moto's server, an Object Lock
bucket): every stored version destroyed, a tombstone and a certificate; a held document
refused; a lock still in force refused by the storage with nothing marked disposed.

Steps go through ``vault.dispositions`` and ``vault.records`` as the routes call them; the
objects are read back from the object store itself. The records' clock is moved ahead
(``Backends.clock``); the storage keeps its own time, so a lock it set is still in force.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from botocore.exceptions import ClientError

from tests.actors.helpers import a_user, store_document, upload_form
from tests.actors.outside_helpers import running_vault
from tests.actors.test_keeper import hold_on, locked_bucket, until_lock
from tests.support import Clock, pdf_bytes, test_settings
from vault.adapters.blobs.s3 import S3BlobStore
from vault.domain.disposition import DispositionStatus, NotDisposable, Proposal
from vault.domain.locks import LockMode, StorageLocked
from vault.domain.models import Document, DocumentStatus, DocumentType, Role
from vault.domain.retention import OnExpiry, Period, PolicyRequest, RetentionMode
from vault.ports import BlobStore

ADMIN = a_user(Role.ADMIN)
OFFICER = a_user(Role.COMPLIANCE_OFFICER)


@attrs.frozen
class Setup:
    vault: Any
    clock: Clock
    s3: bool


@pytest.fixture(params=["local", "s3"])
async def setup(
    request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Setup]:
    blobs: BlobStore | None = None
    if request.param == "s3":
        endpoint = request.getfixturevalue("aws_env")
        blobs = await trio.to_thread.run_sync(locked_bucket, endpoint)
    clock = Clock()
    async with running_vault(nursery, test_settings(tmp_path / "data"), blobs=blobs,
                             clock=clock) as vault:
        yield Setup(vault, clock, request.param == "s3")


async def dispose(setup: Setup, *docs: Document) -> Any:
    dispositions = setup.vault.dispositions
    made = await dispositions.propose(Proposal(tuple(d.id for d in docs), "schedule 4.2"),
                                      ADMIN, "req-1")
    await dispositions.approve(made.disposition_id, OFFICER, "req-2")
    return await dispositions.execute(made.disposition_id, OFFICER, "req-3")


async def versions(setup: Setup, doc: Document) -> list[Any]:
    blobs = setup.vault.backends.blobs
    found: list[Any] = await setup.vault.backends.in_blobs(blobs.stored_versions,
                                                           doc.storage_key)
    return found


async def test_every_version_goes_and_a_tombstone_and_certificate_stay(setup: Setup) -> None:
    doc = await store_document(setup.vault, pdf_bytes(3000))
    expected = 1
    if setup.s3:
        blobs = setup.vault.backends.blobs
        assert isinstance(blobs, S3BlobStore)
        client = blobs._client

        def more_versions() -> None:  # an overwrite and a delete marker, made around the vault
            client.put_object(Bucket=blobs.bucket, Key=doc.storage_key, Body=b"overwritten")
            client.delete_object(Bucket=blobs.bucket, Key=doc.storage_key)

        await trio.to_thread.run_sync(more_versions)
        expected = 3
    assert len(await versions(setup, doc)) == expected
    done = await dispose(setup, doc)
    assert done.status is DispositionStatus.EXECUTED
    (item,) = done.items
    assert len(item.storage_versions or ()) == expected
    assert sum(v.delete_marker for v in item.storage_versions or ()) == (1 if setup.s3 else 0)
    if setup.s3:
        assert doc.storage_version_id in {v.version_id for v in item.storage_versions or ()}
    assert await versions(setup, doc) == []
    store = setup.vault.backends.store
    tomb = await setup.vault.backends.in_db(store.get_document, doc.id)
    assert (tomb.status, tomb.sha256_hash) == (DocumentStatus.DISPOSED, doc.sha256_hash)
    certificate = await setup.vault.dispositions.get(done.disposition_id)
    assert certificate.items[0].leaf_hash == item.leaf_hash


async def test_a_held_document_is_refused(setup: Setup) -> None:
    doc = await store_document(setup.vault, pdf_bytes(3000))
    held = await setup.vault.records.create_hold(hold_on(doc.entity_id), OFFICER, None)
    with pytest.raises(NotDisposable) as refused:
        await dispose(setup, doc)
    assert refused.value.blocked == {doc.id: [f"hold:{held.hold_id}"]}
    assert len(await versions(setup, doc)) == 1


async def test_a_lock_still_in_force_is_storage_locked_and_nothing_is_disposed(
    setup: Setup,
) -> None:
    await setup.vault.records.put_policy(
        DocumentType.KYC,
        PolicyRequest(Period.parse("P1D"), RetentionMode.COMPLIANCE, OnExpiry.DISPOSE),
        ADMIN, None,
    )
    form = attrs.evolve(upload_form(), document_type=DocumentType.KYC)
    doc = await store_document(setup.vault, pdf_bytes(3000), form)
    await until_lock(setup.vault, doc, "the upload's lock", mode=LockMode.COMPLIANCE)
    if setup.s3:
        blobs = setup.vault.backends.blobs
        assert isinstance(blobs, S3BlobStore)
        with pytest.raises(ClientError) as denied:  # the store's own refusal, by version id
            await trio.to_thread.run_sync(lambda: blobs._client.delete_object(
                Bucket=blobs.bucket, Key=doc.storage_key, VersionId=doc.storage_version_id))
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    setup.clock.ahead = timedelta(days=2)  # the records say its time is over
    with pytest.raises(StorageLocked):
        await dispose(setup, doc)
    assert len(await versions(setup, doc)) == 1
    store = setup.vault.backends.store
    kept = await setup.vault.backends.in_db(store.get_document, doc.id)
    assert kept.status is DocumentStatus.UPLOADED
    listed = await setup.vault.dispositions.listed(status=None, limit=10, after=None)
    assert [d.status for d in listed] == [DispositionStatus.APPROVED]
