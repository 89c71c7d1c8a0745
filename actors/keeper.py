"""The retention keeper: brings each object's lock to what the records say.

It runs in the archiver's nursery (the archiver owns documents' lifecycle)
and works off ``storage_lock_queue``: for each document queued it lengthens
the object's retention to the record's (``extend_retention`` never
shortens or weakens, on S3 Object Lock as on the embedded store) and turns
its legal hold on or off as the active holds say, then records what the
object holds. It wakes when a change is committed (``nudge``) and every
``POLL_SECONDS``; a store that fails is retried after a backoff, and the
queue keeps the work, so a crash or an outage loses nothing. Between an
upload's commit and the keeper's pass (milliseconds when the store is up)
the object carries no lock yet.

Health (in the archiver's ``keeper`` part): the backlog, its oldest
queued time, objects locked since start, and the last error.
"""

from __future__ import annotations

from datetime import datetime

import attrs
import structlog
import trio

from actors.deps import Backends
from vault.domain.errors import BlobUnreadable, DependencyUnavailable
from vault.domain.locks import LockTask, ObjectLock
from vault.domain.models import iso_response, utcnow
from vault.domain.publication import backoff

log = structlog.get_logger("vault.records")

POLL_SECONDS = 30.0
BATCH = 100


@attrs.define
class KeeperStatus:
    backlog: int = 0
    oldest_queued_at: datetime | None = None
    applied: int = 0
    failures: int = 0
    last_error: str | None = None

    def snapshot(self) -> dict[str, object]:
        return {
            "backlog": self.backlog,
            "oldest_queued_at": iso_response(self.oldest_queued_at),
            "applied": self.applied,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class RetentionKeeper:
    def __init__(self, backends: Backends, *, poll: float = POLL_SECONDS) -> None:
        self.backends = backends
        self.poll = poll
        self.status = KeeperStatus()
        self._wake = trio.Event()

    def nudge(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake = trio.Event()
            try:
                await self.work_off()
                failures = 0
                wait = self.poll
            except DependencyUnavailable as exc:
                failures += 1
                self.status.failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("storage_lock_failed", error=str(exc))
                wait = backoff(failures)
            with trio.move_on_after(wait):
                await self._wake.wait()

    async def work_off(self) -> None:
        """Apply every queued lock, batch by batch, until the queue is empty."""
        store = self.backends.store
        while True:
            tasks = await self.backends.in_db(store.storage_lock_due, BATCH)
            again = 0
            for task in tasks:
                applied = await self.backends.in_blobs(self._apply, task)
                if not await self.backends.in_db(store.storage_lock_applied, task, applied,
                                                 utcnow()):
                    again += 1
                self.status.applied += 1
            await self._refresh()
            if len(tasks) < BATCH and again == 0:
                return

    def _apply(self, task: LockTask) -> ObjectLock:
        blobs = self.backends.blobs
        try:
            if task.retention is not None:
                state = blobs.extend_retention(task.storage_key, task.version_id, task.retention)
            else:
                state = blobs.lock_state(task.storage_key, task.version_id)
        except BlobUnreadable as exc:
            # The object is gone (the sweep reports it as a mismatch): nothing to lock.
            log.warning("storage_lock_object_missing", document_id=str(task.document_id),
                        error=str(exc))
            return ObjectLock.unlocked(task.version_id)
        if state.legal_hold != task.legal_hold:
            state = blobs.set_legal_hold(task.storage_key, task.version_id, task.legal_hold)
        log.info("storage_lock_applied", document_id=str(task.document_id),
                 mode=None if state.mode is None else state.mode.value,
                 retain_until=iso_response(state.retain_until), legal_hold=state.legal_hold)
        return state

    async def _refresh(self) -> None:
        backlog, oldest = await self.backends.in_db(self.backends.store.storage_lock_backlog)
        self.status.backlog, self.status.oldest_queued_at = backlog, oldest
        self.status.last_error = None
