"""What the upload actor does with a stored blob when recording its document fails.

The metadata store is the real SQLite one behind a stand-in that fails
``record_upload`` the ways a database can: before anything committed, or
after the commit took effect with its answer lost (PostgreSQL's connection
dropped at COMMIT), and whose ``documents_present`` can fail as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import attrs
import pytest
import structlog
import trio

from actors.housekeeping import SweepCounts, sweep_orphan_blobs
from actors.system import Sizing, Vault, run_vault
from tests.actors.helpers import (
    blob_root,
    files_under,
    object_path,
    store_document,
    upload_form,
    verify,
)
from tests.support import pdf_bytes
from vault.config import Settings
from vault.domain.errors import StoreUnavailable
from vault.domain.models import DocumentStatus, utcnow
from vault_http.serve import build_backends


class FailingRecords:
    """The real store, whose ``record_upload`` fails: after committing when ``commit_first``,
    else before; ``documents_present`` fails too when ``blind``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commit_first = False
        self.blind = False

    def record_upload(self, *args: Any, **kwargs: Any) -> Any:
        if self.commit_first:
            self.inner.record_upload(*args, **kwargs)
        raise StoreUnavailable("metadata store failed during record_upload: connection lost")

    def documents_present(self, document_ids: Any) -> Any:
        if self.blind:
            raise StoreUnavailable("metadata store failed during documents_present: down")
        return self.inner.documents_present(document_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@attrs.frozen
class Rig:
    vault: Vault
    store: FailingRecords


@pytest.fixture
async def rig(nursery: trio.Nursery, settings: Settings) -> AsyncIterator[Rig]:
    backends, _signer = await trio.to_thread.run_sync(build_backends, settings)
    store = FailingRecords(backends.store)
    running: Vault = await nursery.start(
        run_vault, attrs.evolve(backends, store=store), Sizing()
    )
    yield Rig(running, store)
    await running.stop(5)
    await trio.to_thread.run_sync(backends.store.close)


async def stored_objects(vault: Vault) -> list[Any]:
    return await files_under(blob_root(vault) / "objects")


async def test_a_record_that_failed_before_committing_removes_its_blob(rig: Rig) -> None:
    """A record the store never wrote leaves no blob behind, as before."""
    with pytest.raises(StoreUnavailable):
        await store_document(rig.vault, pdf_bytes(500))

    assert await stored_objects(rig.vault) == []


async def test_a_record_committed_with_its_answer_lost_keeps_its_blob(rig: Rig) -> None:
    """When the store fails after the row committed, the caller hears of the failure but the
    row keeps its blob, and the document verifies."""
    rig.store.commit_first = True
    entity_id = uuid4()

    with structlog.testing.capture_logs() as logs, pytest.raises(StoreUnavailable):
        await store_document(rig.vault, pdf_bytes(500), upload_form(entity_id))

    (document,) = await rig.vault.backends.in_db(
        lambda: rig.store.list_documents(
            entity_id, entity_type=None, include_archived=True, limit=10, after=None
        )
    )
    assert await stored_objects(rig.vault) == [object_path(rig.vault, document.storage_key)]
    assert (await verify(rig.vault, document.id)).status is DocumentStatus.VERIFIED
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "upload_recorded_despite_error"
    ]


async def test_a_blob_whose_record_cannot_be_checked_is_left_for_the_sweep(rig: Rig) -> None:
    """When the store can say neither way, the blob stays (logged ``orphan_blob_left``), and
    the start-up sweep removes it once it finds no row."""
    rig.store.blind = True

    with structlog.testing.capture_logs() as logs, pytest.raises(StoreUnavailable):
        await store_document(rig.vault, pdf_bytes(500))

    (left,) = await stored_objects(rig.vault)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["orphan_blob_left"]
    rig.store.blind = False
    counts = await sweep_orphan_blobs(rig.vault.backends, now=utcnow(), grace_seconds=0.0)
    assert counts == SweepCounts(objects_seen=1, removed=1)
    assert not await trio.to_thread.run_sync(left.exists)
