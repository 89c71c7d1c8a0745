"""Mirroring: keep the log's static copy in S3 (``ledger/``, c2sp.org/tlog-tiles) current.

Part of the ledger actor. Whenever a checkpoint is published (cosigned by
the quorum, or signed when no witness is configured), the new full tiles
and entry bundles, the partial ones of its size, and then the checkpoint
itself are written (``S3LogMirror.mirror``), so a tlog-tiles client can
read and check the log from the bucket alone, even with the service down.

Where the mirror stands is read from the bucket at start (its checkpoint,
if it opens with the log's key); a failed write is tried again after a
backoff from the same place, and full tiles written twice get the same
bytes. Several processes may mirror one log: each writes only checkpoints
larger than the one it last wrote, though two may briefly overwrite the
bucket's checkpoint in either order (readers then see an older, still
valid, checkpoint until the next).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

import attrs
import structlog
import trio

from actors.deps import Backends
from vault.adapters.blobs.log_mirror import MirrorRefused, MirrorUnavailable, S3LogMirror
from vault.domain.checkpoint import CheckpointError, open_checkpoint
from vault.domain.errors import DependencyUnavailable
from vault.domain.models import iso_response, utcnow
from vault.domain.note import NoteError, Verifier
from vault.domain.publication import PublishedCheckpoint, backoff
from vault.ports import MetadataStore

log = structlog.get_logger("vault.ledger")


@attrs.define
class MirrorStatus:
    size: int = 0
    objects: int = 0
    failures: int = 0
    last_mirrored_at: datetime | None = None
    last_error: str | None = None

    def snapshot(self) -> dict[str, object]:
        return {
            "size": self.size,
            "objects": self.objects,
            "failures": self.failures,
            "last_mirrored_at": None if self.last_mirrored_at is None
            else iso_response(self.last_mirrored_at),
            "last_error": self.last_error,
        }


class Mirroring:
    def __init__(
        self,
        backends: Backends,
        mirror: S3LogMirror,
        verifier: Verifier,
        published: Callable[[MetadataStore], PublishedCheckpoint | None],
    ) -> None:
        self.backends = backends
        self.mirror = mirror
        self.verifier = verifier
        self.published = published
        self.status = MirrorStatus()
        self._wake = trio.Event()

    def changed(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self.status.size = await self._start_size()
        failures = 0
        while True:
            self._wake = trio.Event()
            wait = math.inf
            try:
                await self._once()
                failures = 0
            except (DependencyUnavailable, MirrorRefused) as exc:
                failures += 1
                self.status.failures += 1
                self.status.last_error = str(exc)
                log.warning("mirror_failed", error=str(exc), size=self.status.size)
                wait = backoff(failures)
            with trio.move_on_after(wait):
                await self._wake.wait()

    async def _start_size(self) -> int:
        failures = 0
        while True:
            try:
                note = await self.backends.in_blobs(self.mirror.mirrored)
                break
            except MirrorUnavailable as exc:
                failures += 1
                self.status.failures += 1
                self.status.last_error = str(exc)
                await trio.sleep(backoff(failures))
        if note is None:
            return 0
        try:
            return open_checkpoint(note, self.verifier).size
        except (CheckpointError, NoteError):
            log.warning("mirror_checkpoint_foreign", key=self.mirror.checkpoint_key)
            return 0

    async def _once(self) -> None:
        store = self.backends.store
        latest = await self.backends.in_db(self.published, store)
        if latest is None or latest.size <= self.status.size:
            return
        result = await self.backends.in_blobs(
            self.mirror.mirror, store, self.status.size, latest.size, latest.note
        )
        self.status.size = latest.size
        self.status.objects += result.objects
        self.status.last_mirrored_at = utcnow()
        self.status.last_error = None
        log.info("log_mirrored", tree_size=latest.size, objects=result.objects)
