"""The start-up sweep of orphan blobs, on SQLite and the local blob store of a running vault.

Documents are stored through the upload actor; orphans are objects written
straight to the blob store with no row, their age set through the file's
mtime. Stand-ins around the real stores record what the sweep asks of them
and hold it where a test needs it held.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
import structlog
import trio

from actors.deps import Backends
from actors.housekeeping import (
    DOCUMENTS_PREFIX,
    SweepCounts,
    run_orphan_sweep,
    sweep_orphan_blobs,
)
from actors.system import Vault
from tests.actors.helpers import archive, object_path, store_document
from tests.support import pdf_bytes
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import StoreUnavailable
from vault.domain.models import utcnow
from vault.domain.uploads import storage_key
from vault.ports import StoredObject

HOUR = 3600.0
GRACE = 300.0


def plant(vault: Vault, key: str, *, age: float = HOUR) -> Path:
    """Commit an object under ``key`` with no row, last written ``age`` seconds ago."""
    writer = vault.backends.blobs.open_writer(key)
    writer.write(b"no row names me")
    writer.commit()
    path = object_path(vault, key)
    moment = utcnow().timestamp() - age
    os.utime(path, (moment, moment))
    return path


def orphan_key() -> str:
    return storage_key(uuid4())


async def planted(vault: Vault, key: str, *, age: float = HOUR) -> Path:
    return await trio.to_thread.run_sync(lambda: plant(vault, key, age=age))


async def exists(path: Path) -> bool:
    return await trio.to_thread.run_sync(path.exists)


async def sweep(
    backends: Backends, *, grace: float = GRACE, now: datetime | None = None, **options: Any
) -> SweepCounts:
    return await sweep_orphan_blobs(
        backends, now=now or utcnow(), grace_seconds=grace, **options
    )


def with_grace(backends: Backends, grace: float) -> Backends:
    settings = attrs.evolve(backends.settings, orphan_blob_grace_seconds=grace)
    return attrs.evolve(backends, settings=settings)


class RecordingStore:
    """The real metadata store, recording each ``documents_present`` batch; ``down`` makes
    that call fail as a store that cannot be reached; ``on_present`` runs after each call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[UUID]] = []
        self.down = False
        self.on_present: Any = None

    def documents_present(self, document_ids: Sequence[UUID]) -> set[UUID]:
        self.batches.append(list(document_ids))
        if self.down:
            raise StoreUnavailable("metadata store failed during documents_present: down")
        present: set[UUID] = self.inner.documents_present(document_ids)
        if self.on_present is not None:
            self.on_present()
        return present

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HeldBlobs:
    """The real blob store, whose listing waits for ``release`` before its first page and
    records the thread it runs in, its closing and every delete."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.listing = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.threads: list[threading.Thread] = []
        self.closed = False
        self.deleted: list[str] = []

    def list_objects(self, prefix: str, *, page_size: int = 1000) -> Iterator[list[StoredObject]]:
        def pages() -> Generator[list[StoredObject], None, None]:
            try:
                self.threads.append(threading.current_thread())
                self.listing.set()
                self.release.wait(30)
                for page in self.inner.list_objects(prefix, page_size=page_size):
                    self.threads.append(threading.current_thread())
                    yield page
            finally:
                self.closed = True

        return pages()

    def delete(self, key: str, version_id: str | None) -> None:
        self.deleted.append(key)
        self.inner.delete(key, version_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestWhatIsRemoved:
    async def test_an_old_orphan_goes_and_a_documents_blob_stays(self, vault: Vault) -> None:
        """An object past the grace period with no row is deleted; a stored document's blob,
        as old, is kept and still reads back."""
        data = pdf_bytes(2000)
        doc = await store_document(vault, data)
        await trio.to_thread.run_sync(
            lambda: os.utime(object_path(vault, doc.storage_key), (0, 0))
        )
        orphan = await planted(vault, orphan_key())

        counts = await sweep(vault.backends)

        assert counts == SweepCounts(objects_seen=2, removed=1)
        assert not await exists(orphan)
        blobs = vault.backends.blobs
        stored = await vault.backends.in_blobs(
            lambda: b"".join(blobs.read(doc.storage_key, None))
        )
        assert stored == data

    async def test_an_orphan_the_store_keeps_locked_is_counted_and_the_sweep_goes_on(
        self, vault: Vault
    ) -> None:
        """A legal hold on the object itself: its delete is refused, the next orphan goes."""
        locked, free = orphan_key(), orphan_key()
        await planted(vault, locked)
        free_path = await planted(vault, free)
        blobs = vault.backends.blobs
        await vault.backends.in_blobs(blobs.set_legal_hold, locked, None, True)

        counts = await sweep(vault.backends)

        assert counts == SweepCounts(objects_seen=2, removed=1, locked_orphans_kept=1)
        assert not await exists(free_path)
        state = await vault.backends.in_blobs(blobs.lock_state, locked, None)
        assert state.legal_hold

    async def test_an_archived_documents_blob_stays(self, vault: Vault) -> None:
        """A row in any status names its blob: archiving does not make it an orphan."""
        doc = await store_document(vault, pdf_bytes(300))
        await archive(vault, doc.id)

        counts = await sweep(vault.backends, grace=0.0)

        assert counts == SweepCounts(objects_seen=1)
        assert await exists(object_path(vault, doc.storage_key))

    async def test_a_young_orphan_is_kept_and_counted_until_its_grace_ends(
        self, vault: Vault
    ) -> None:
        """An orphan written within the grace period is counted and kept; a sweep once the
        period is over removes it."""
        orphan = await planted(vault, orphan_key(), age=10.0)

        kept = await sweep(vault.backends, grace=GRACE)
        assert kept == SweepCounts(objects_seen=1, young_orphans_kept=1)
        assert await exists(orphan)

        later = await sweep(vault.backends, grace=GRACE, now=utcnow() + timedelta(seconds=GRACE))
        assert later == SweepCounts(objects_seen=1, removed=1)
        assert not await exists(orphan)

    async def test_an_object_written_after_the_sweeps_clock_is_kept_without_grace(
        self, vault: Vault
    ) -> None:
        """With no grace at all, an object last written after the sweep read its clock (an
        upload of this very process) is still young, and kept."""
        now = utcnow()
        orphan = await planted(vault, orphan_key(), age=-1.0)

        counts = await sweep(vault.backends, grace=0.0, now=now)

        assert counts == SweepCounts(objects_seen=1, young_orphans_kept=1)
        assert await exists(orphan)

    async def test_keys_that_name_no_document_are_left_alone(self, vault: Vault) -> None:
        """Keys under ``documents/`` that are not exactly a document's ``storage_key`` are
        counted and kept, however old; keys outside it are not even seen."""
        document_id = uuid4()
        foreign = [
            "documents/notes.txt",
            f"documents/{str(document_id).upper()}",
            f"documents/{document_id.hex}",
            f"documents/{document_id}/extra",
        ]
        paths = [await planted(vault, key) for key in [*foreign, "other/readme"]]

        counts = await sweep(vault.backends, grace=0.0)

        assert counts == SweepCounts(objects_seen=4, non_document_keys=4)
        assert all([await exists(path) for path in paths])
        assert storage_key(document_id).startswith(DOCUMENTS_PREFIX)


class TestHowItAsks:
    async def test_document_ids_are_asked_in_batches(self, vault: Vault) -> None:
        """Seven orphans in batches of three make three ``documents_present`` calls of at
        most three ids, covering each orphan once."""
        keys = [orphan_key() for _ in range(7)]
        for key in keys:
            await planted(vault, key)
        store = RecordingStore(vault.backends.store)
        backends = attrs.evolve(vault.backends, store=store)

        counts = await sweep(backends, batch_size=3)

        assert sorted(len(batch) for batch in store.batches) == [1, 3, 3]
        asked = sorted(storage_key(i) for batch in store.batches for i in batch)
        assert asked == sorted(keys)
        assert counts == SweepCounts(objects_seen=7, removed=7)

    async def test_the_store_down_deletes_nothing_and_raises(self, vault: Vault) -> None:
        """When the metadata store cannot say which rows exist, no object is deleted and the
        store's error reaches the caller."""
        orphan = await planted(vault, orphan_key())
        store = RecordingStore(vault.backends.store)
        store.down = True

        with pytest.raises(StoreUnavailable):
            await sweep(attrs.evolve(vault.backends, store=store), grace=0.0)

        assert await exists(orphan)


class TestInTheBackground:
    async def test_one_line_reports_the_counts(self, vault: Vault) -> None:
        """The background sweep logs ``orphan_blobs_removed`` once, with every count and the
        grace period it applied."""
        await planted(vault, orphan_key())
        await planted(vault, orphan_key(), age=1.0)
        await planted(vault, "documents/readme.txt")
        backends = with_grace(vault.backends, 60.0)

        with structlog.testing.capture_logs() as logs:
            await run_orphan_sweep(backends)

        (line,) = [entry for entry in logs if entry["event"] == "orphan_blobs_removed"]
        assert line["removed"] == 1
        assert line["young_orphans_kept"] == 1
        assert line["objects_seen"] == 3
        assert line["non_document_keys"] == 1
        assert line["grace_seconds"] == 60.0
        assert line["log_level"] == "info"

    async def test_started_returns_while_the_listing_still_runs_in_a_thread(
        self, vault: Vault
    ) -> None:
        """Starting the sweep hands back its cancel scope at once, while the listing, held in
        a worker thread, has not produced a page; released, the sweep finishes."""
        key = orphan_key()
        orphan = await planted(vault, key)
        blobs = HeldBlobs(vault.backends.blobs)
        blobs.release.clear()
        backends = with_grace(attrs.evolve(vault.backends, blobs=blobs), 0.0)

        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                scope = await nursery.start(run_orphan_sweep, backends)
                assert isinstance(scope, trio.CancelScope)
                await trio.to_thread.run_sync(blobs.listing.wait, 10)
                assert await exists(orphan)
                blobs.release.set()

        assert blobs.threads
        assert threading.main_thread() not in blobs.threads
        assert blobs.deleted == [key]
        assert not await exists(orphan)
        assert [(entry["event"], entry["log_level"]) for entry in logs] == [
            ("orphan_blob_deleted", "debug"),
            ("orphan_blobs_removed", "info"),
        ]

    async def test_cancelling_stops_before_the_next_delete(self, vault: Vault) -> None:
        """Cancelled while it asks which rows exist, the sweep deletes nothing more, closes
        its listing, logs how far it got and ends quietly."""
        keys = [orphan_key() for _ in range(3)]
        for key in keys:
            await planted(vault, key)
        store = RecordingStore(vault.backends.store)
        blobs = HeldBlobs(vault.backends.blobs)
        backends = with_grace(attrs.evolve(vault.backends, store=store, blobs=blobs), 0.0)
        token = trio.lowlevel.current_trio_token()
        scopes: list[trio.CancelScope] = []
        store.on_present = lambda: trio.from_thread.run_sync(scopes[0].cancel, trio_token=token)

        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                scopes.append(await nursery.start(run_orphan_sweep, backends))

        assert len(store.batches) == 1
        assert blobs.deleted == []
        assert blobs.closed
        assert all([await exists(object_path(vault, key)) for key in keys])
        (line,) = logs
        assert line["event"] == "orphan_blob_sweep_cancelled"
        assert (line["objects_seen"], line["removed"]) == (3, 0)

    async def test_a_blob_store_that_is_down_is_logged_not_raised(
        self, vault: Vault, tmp_path: Path
    ) -> None:
        """A blob store that cannot be listed ends the sweep with one warning naming the
        failure; the task itself returns normally."""
        not_a_folder = tmp_path / "not-a-folder"
        await trio.to_thread.run_sync(not_a_folder.write_bytes, b"")
        broken = LocalBlobStore(not_a_folder, bytes(32), UrlSigner(bytes(32)), "http://x")
        backends = attrs.evolve(vault.backends, blobs=broken)

        with structlog.testing.capture_logs() as logs:
            await run_orphan_sweep(backends)

        (line,) = logs
        assert line["event"] == "orphan_blob_sweep_failed"
        assert line["log_level"] == "warning"
        assert "Not a directory" in line["error"]
        assert line["objects_seen"] == 0

    async def test_a_metadata_store_that_is_down_is_logged_with_the_counts(
        self, vault: Vault
    ) -> None:
        """The store failing mid-sweep is logged with what was seen so far, and the orphans
        stay."""
        orphan = await planted(vault, orphan_key())
        store = RecordingStore(vault.backends.store)
        store.down = True
        backends = with_grace(attrs.evolve(vault.backends, store=store), 0.0)

        with structlog.testing.capture_logs() as logs:
            await run_orphan_sweep(backends)

        (line,) = logs
        assert line["event"] == "orphan_blob_sweep_failed"
        assert "documents_present" in line["error"]
        assert (line["objects_seen"], line["removed"]) == (1, 0)
        assert await exists(orphan)
