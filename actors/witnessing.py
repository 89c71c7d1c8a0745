"""Witnessing: bring every witness up to the latest signed checkpoint; publish at quorum.

Part of the ledger actor (it runs in the ledger's nursery and hears of each
checkpoint through ``signed``). One courier a witness submits the latest
signed checkpoint with a consistency proof from the size that witness last
cosigned (c2sp.org/tlog-witness ``add-checkpoint``):

* 200: the lines are checked against the witness's key; the line is kept
  (``ledger_cosignatures``) and, once ``quorum`` of the configured
  witnesses cosigned that size, the checkpoint is published with their
  lines (``ledger_published``), which is what the checkpoint route serves;
* 409: the witness is at another size; the courier starts the proof from
  there (at most twice a checkpoint), or, when the witness is ahead of this
  checkpoint (another process signed further), waits for a larger one;
* 403, 404, 422 and anything unreachable: the error is kept for health and
  metrics, and the courier tries again after a backoff (1 s doubling to
  5 min), sooner when a new checkpoint is signed. A 422 means the witness
  holds a history this log does not extend: a split view, to investigate.

A witness down delays publication, never signing. Where a courier starts
after a restart comes from the database (the largest size each witness
cosigned); a 409 corrects it if another process moved the witness since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import attrs
import structlog
import trio

from actors.deps import Backends
from actors.log_reads import proof_between
from vault.adapters.witness_client import Cosigned, Refused, SizeConflict, WitnessClient
from vault.config import WitnessSpec
from vault.domain.cosignature import CosignatureError, verify_cosignature
from vault.domain.errors import DependencyUnavailable
from vault.domain.log import SignedCheckpoint
from vault.domain.models import iso_response, utcnow
from vault.domain.publication import backoff, published_note, quorum_lines
from vault.ports import MetadataStore

log = structlog.get_logger("vault.ledger")

CONFLICT_RETRIES = 2


class WitnessFailed(Exception):
    """A witness refused the checkpoint or answered something unusable."""


@attrs.define
class WitnessStatus:
    """What health and metrics show of one witness."""

    name: str
    url: str
    cosigned_size: int = 0
    cosignatures: int = 0
    failures: int = 0
    latency_seconds: float | None = None
    last_error: str | None = None
    last_cosigned_at: datetime | None = None

    def snapshot(self) -> dict[str, object]:
        return {
            "url": self.url,
            "cosigned_size": self.cosigned_size,
            "cosignatures": self.cosignatures,
            "failures": self.failures,
            "latency_ms": None if self.latency_seconds is None
            else round(self.latency_seconds * 1000, 1),
            "last_error": self.last_error,
            "last_cosigned_at": None if self.last_cosigned_at is None
            else iso_response(self.last_cosigned_at),
        }


def proof_from(store: MetadataStore, old: int, new: int) -> tuple[bytes, ...]:
    """The consistency proof from size ``old`` (0: none needed) to ``new``. Blocks."""
    return () if old == 0 else proof_between(store, old, new).hashes


class Witnessing:
    """The couriers of the configured witnesses, and publication at ``quorum``."""

    def __init__(
        self,
        backends: Backends,
        witnesses: Sequence[WitnessSpec],
        quorum: int,
        *,
        clients: Sequence[WitnessClient] | None = None,
        limiter: trio.CapacityLimiter | None = None,
        on_publish: Callable[[], None] = lambda: None,
    ) -> None:
        if not 1 <= quorum <= len(witnesses):
            raise ValueError(f"quorum {quorum} is not between 1 and {len(witnesses)}")
        self.backends = backends
        self.witnesses = tuple(witnesses)
        self.quorum = quorum
        self.clients = (
            tuple(clients) if clients is not None
            else tuple(WitnessClient(w.url) for w in witnesses)
        )
        self.limiter = limiter or trio.CapacityLimiter(len(witnesses))
        self.on_publish = on_publish
        self.statuses = [WitnessStatus(w.key.name, w.url) for w in witnesses]
        self._latest: SignedCheckpoint | None = None
        self._wake = trio.Event()
        self.published_size = 0
        """The largest checkpoint this process saw reach the quorum."""

    @property
    def keys(self) -> list[str]:
        return [w.key.format() for w in self.witnesses]

    def signed(self, checkpoint: SignedCheckpoint | None) -> None:
        """The latest signed checkpoint: couriers behind it go again at once."""
        if checkpoint is None:
            return
        if self._latest is not None and checkpoint.size <= self._latest.size:
            return
        self._latest = checkpoint
        self._wake.set()
        self._wake = trio.Event()

    def snapshot(self) -> dict[str, object]:
        return {status.name: status.snapshot() for status in self.statuses}

    async def run(self) -> None:
        store = self.backends.store
        sizes = await self.backends.in_db(store.witness_sizes)
        published = await self.backends.in_db(store.latest_published)
        self.published_size = 0 if published is None else published.size
        for status, key in zip(self.statuses, self.keys, strict=True):
            status.cosigned_size = sizes.get(key, 0)
        try:
            async with trio.open_nursery() as nursery:
                for n in range(len(self.witnesses)):
                    nursery.start_soon(self._courier, n)
        finally:
            for client in self.clients:
                client.close()

    async def _courier(self, n: int) -> None:
        status = self.statuses[n]
        failures = 0
        while True:
            wake = self._wake
            latest = self._latest
            if latest is None or latest.size <= status.cosigned_size:
                await wake.wait()
                continue
            try:
                await self._submit(n, latest)
            except (WitnessFailed, DependencyUnavailable) as exc:
                failures += 1
                status.failures += 1
                status.last_error = str(exc)
                log.warning("witness_failed", witness=status.name, size=latest.size,
                            error=str(exc))
                # Again after the backoff, or sooner when a newer checkpoint is signed.
                with trio.move_on_after(backoff(failures)):
                    await wake.wait()
                continue
            failures = 0

    async def _submit(self, n: int, checkpoint: SignedCheckpoint) -> None:
        status, client, witness = self.statuses[n], self.clients[n], self.witnesses[n]
        store = self.backends.store
        old = min(status.cosigned_size, checkpoint.size)
        for _ in range(CONFLICT_RETRIES + 1):
            proof = await self.backends.in_db(proof_from, store, old, checkpoint.size)
            started = trio.current_time()
            answer = await trio.to_thread.run_sync(
                client.add_checkpoint, old, proof, checkpoint.note,
                limiter=self.limiter, abandon_on_cancel=True,
            )
            status.latency_seconds = trio.current_time() - started
            if isinstance(answer, Cosigned):
                line = _own_line(checkpoint.note, answer.lines, witness)
                await self._cosigned(n, checkpoint, line)
                return
            if isinstance(answer, Refused):
                raise WitnessFailed(
                    f"{status.name} refused size {checkpoint.size} from {old}"
                    f" (HTTP {answer.status}): {answer.reason}"
                )
            assert isinstance(answer, SizeConflict)
            if answer.size > checkpoint.size:
                # The witness cosigned a larger tree. Another process may have
                # signed further (wait for a checkpoint that large); if this log
                # never signed that size, the witness holds another history.
                if await self.backends.in_db(store.checkpoint_at, answer.size) is None:
                    raise WitnessFailed(
                        f"{status.name} cosigned size {answer.size}, which this log never"
                        " signed: it holds another history (a split view)"
                    )
                status.cosigned_size = answer.size
                return
            if answer.size == old:
                raise WitnessFailed(f"{status.name} answered 409 with the size it was sent ({old})")
            old = answer.size
        raise WitnessFailed(f"{status.name} kept moving under size {checkpoint.size}")

    async def _cosigned(self, n: int, checkpoint: SignedCheckpoint, line: str) -> None:
        status = self.statuses[n]
        store = self.backends.store
        now = utcnow()
        await self.backends.in_db(store.add_cosignature, self.keys[n], checkpoint.size, line, now)
        status.cosigned_size = max(status.cosigned_size, checkpoint.size)
        status.cosignatures += 1
        status.last_error = None
        status.last_cosigned_at = now
        cosigned = await self.backends.in_db(store.cosignatures_at, checkpoint.size)
        lines = quorum_lines(cosigned, self.keys, self.quorum)
        if lines is not None:
            note = published_note(checkpoint.note, lines)
            await self.backends.in_db(store.publish_checkpoint, checkpoint.size, note, now)
            self.published_size = max(self.published_size, checkpoint.size)
            self.on_publish()
            log.info("checkpoint_published", tree_size=checkpoint.size, cosignatures=len(lines))


def _own_line(note: str, lines: str, witness: WitnessSpec) -> str:
    """The one line among ``lines`` that is ``witness``'s valid cosignature on ``note``."""
    for line in lines.splitlines(keepends=True):
        try:
            verify_cosignature(note + line, witness.key)
        except (CosignatureError, ValueError):
            continue
        return line
    raise WitnessFailed(f"{witness.key.name} answered no valid cosignature by its key")
