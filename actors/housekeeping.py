"""Housekeeping at start-up: remove the blobs no document row names.

An upload commits its blob first and its row second (``actors/upload.py``),
and removes the blob when the row fails; a process killed between the two
(SIGKILL, the OOM killer, a lost host) leaves an object that no row will
ever name. Once per start, after the actors are up, ``run_orphan_sweep``
lists every object under ``documents/``, asks the metadata store in batches
which of their document ids have a row, and deletes the objects whose id
has none and that were last written more than ``ORPHAN_BLOB_GRACE_SECONDS``
before the sweep began. It logs one line, ``orphan_blobs_removed``, with
what it saw.

What is never deleted:

- an object whose key is not exactly ``storage_key(<uuid>)``: it is not a
  document's, so it is counted (``non_document_keys``) and left alone;
- an object whose id has a row, in any status;
- an orphan the object store keeps locked (``locked_orphans_kept``: a
  retention or a legal hold on the object itself, which only time or its
  release lifts);
- an orphan younger than the grace period (``young_orphans_kept``): another
  replica may be between its blob and its row right now. This process's own
  uploads are younger still: the sweep's clock is read before the port
  opens, so no upload of this process has written a byte by then.

Concurrency: the sweep runs in the background; listing a page, each
``documents_present`` batch and each delete is one call in a worker thread
through the blob or database limiter, so it never blocks the event loop,
holds one thread at a time, and a cancellation (shutdown) takes effect
after at most one such call. A store that is down ends the sweep with
``orphan_blob_sweep_failed`` in the log, never the process.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import attrs
import structlog
import trio

from actors.deps import Backends
from vault.domain.errors import DependencyUnavailable
from vault.domain.locks import StorageLocked
from vault.domain.models import utcnow
from vault.domain.uploads import storage_key
from vault.ports import StoredObject

log = structlog.get_logger("vault.housekeeping")

DOCUMENTS_PREFIX = "documents/"
"""Where ``storage_key`` puts every document's blob."""
PRESENT_BATCH = 500
"""Document ids per ``documents_present`` call."""


@attrs.define
class SweepCounts:
    """What one sweep saw and did, so far."""

    objects_seen: int = 0
    """Objects listed under ``documents/``."""
    removed: int = 0
    """Orphans older than the grace period, deleted."""
    young_orphans_kept: int = 0
    """Orphans within the grace period, left for a later sweep."""
    locked_orphans_kept: int = 0
    """Orphans the object store refused to delete (retention or legal hold on the object)."""
    non_document_keys: int = 0
    """Objects whose key names no document, left alone."""

    def fields(self) -> dict[str, int]:
        return attrs.asdict(self)


def document_id_of(key: str) -> UUID | None:
    """The document a key belongs to, when it is exactly that document's ``storage_key``."""
    if not key.startswith(DOCUMENTS_PREFIX):
        return None
    try:
        document_id = UUID(key[len(DOCUMENTS_PREFIX) :])
    except ValueError:
        return None
    return document_id if storage_key(document_id) == key else None


async def sweep_orphan_blobs(
    backends: Backends,
    *,
    now: datetime,
    grace_seconds: float,
    batch_size: int = PRESENT_BATCH,
    counts: SweepCounts | None = None,
) -> SweepCounts:
    """Delete the objects under ``documents/`` that no row names and that were last
    written at least ``grace_seconds`` before ``now``; return the counts.

    ``counts`` (updated as the sweep goes) lets a caller report how far a
    sweep got when it fails or is cancelled. The stores' errors propagate.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    counts = counts if counts is not None else SweepCounts()
    cutoff = now - timedelta(seconds=grace_seconds)
    pages = backends.blobs.list_objects(DOCUMENTS_PREFIX)
    batch: list[tuple[UUID, StoredObject]] = []
    try:
        while (page := await backends.in_blobs(_next_page, pages)) is not None:
            for stored in page:
                counts.objects_seen += 1
                document_id = document_id_of(stored.key)
                if document_id is None:
                    counts.non_document_keys += 1
                    continue
                batch.append((document_id, stored))
                if len(batch) == batch_size:
                    await _settle(backends, batch, cutoff, counts)
                    batch = []
        if batch:
            await _settle(backends, batch, cutoff, counts)
    finally:
        if isinstance(pages, Generator):
            pages.close()  # closes the store's open folders or response, at once
    return counts


def _next_page(pages: Iterator[list[StoredObject]]) -> list[StoredObject] | None:
    return next(pages, None)


async def _settle(
    backends: Backends,
    batch: Sequence[tuple[UUID, StoredObject]],
    cutoff: datetime,
    counts: SweepCounts,
) -> None:
    """Delete the orphans of one batch that are past the cutoff; count the young ones."""
    present = await backends.in_db(
        backends.store.documents_present, [document_id for document_id, _ in batch]
    )
    for document_id, stored in batch:
        if document_id in present:
            continue
        if stored.last_modified > cutoff:
            counts.young_orphans_kept += 1
            continue
        try:
            await backends.in_blobs(backends.blobs.delete, stored.key, None)
        except StorageLocked:
            counts.locked_orphans_kept += 1
            log.info("orphan_blob_locked", storage_key=stored.key)
            continue
        counts.removed += 1
        log.debug(
            "orphan_blob_deleted",
            storage_key=stored.key,
            last_modified=stored.last_modified.isoformat(),
        )


async def run_orphan_sweep(
    backends: Backends,
    *,
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The start-up sweep as a background task; never raises but for cancellation.

    Reports started at once, handing over the scope that cancels the sweep;
    the sweep's clock is read before that, so an upload accepted after the
    caller continues is younger than any object the sweep may delete.
    """
    grace = backends.settings.orphan_blob_grace_seconds
    with trio.CancelScope() as scope:
        now = utcnow()
        task_status.started(scope)
        counts = SweepCounts()
        began = time.monotonic()
        try:
            await sweep_orphan_blobs(backends, now=now, grace_seconds=grace, counts=counts)
        except trio.Cancelled:
            log.info("orphan_blob_sweep_cancelled", grace_seconds=grace, **counts.fields())
            raise
        except DependencyUnavailable as exc:
            log.warning(
                "orphan_blob_sweep_failed", error=str(exc), grace_seconds=grace, **counts.fields()
            )
            return
        except Exception as exc:
            log.exception(
                "orphan_blob_sweep_failed", error=repr(exc), grace_seconds=grace,
                **counts.fields(),
            )
            return
        log.info(
            "orphan_blobs_removed",
            grace_seconds=grace,
            duration_seconds=round(time.monotonic() - began, 3),
            **counts.fields(),
        )
