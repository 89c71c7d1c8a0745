"""The ledger actor: integrate pending leaves into the tree and sign checkpoints.

A document change writes its leaf pending in its own transaction and
nudges this actor (``Integrate``), which integrates in batches of
``batch_size`` (one transaction each, see ``integrate_leaves``); a nudge
waits ``nudge_gap`` (50 ms) for the commits right behind it, so a burst
of uploads costs a few integrations rather than one each. Every
``interval`` seconds (``LEDGER_CHECKPOINT_INTERVAL_SECONDS``) it integrates
what is left and, when the tree has grown, signs a checkpoint of it: a
change is under a signed checkpoint at most ``interval`` after it
committed. ``Publish`` asks for that at once (the verifier uses it for a
document uploaded a moment ago) and answers the latest checkpoint.

Before signing, the new tree is checked against the latest checkpoint
already signed (a consistency proof from the tiles): the actor never
signs a tree that does not extend what it signed before. A store that
fails that check is reported in health and nothing is signed.

At start, whatever is pending is integrated and signed before the actor
reports ready, so the service never serves a log that lags its database;
at close it integrates and signs once more.

Several processes may run this actor on one database: integration is
serialised by the store, and a checkpoint of a size already signed is
kept once (Ed25519 signatures are deterministic, so both wrote the same).

Each checkpoint signed goes out (``actors.outside``): to the witnesses,
which must cosign it before it is published; to a Time-Stamp Authority
and an EVM chain at their intervals; and to the S3 mirror once published.
Those run beside the loop in the actor's nursery and never delay signing.

Health: ``extra`` holds ``tree_size``, ``pending``, ``checkpoint_size`` and
``last_checkpoint_at`` as of the last cycle; ``published_size``,
``witnesses``, ``anchors`` and ``mirror`` are read live from the parts.
"""

from __future__ import annotations

import attrs
import structlog
import trio

from actors.deps import Backends
from actors.outside import Outside
from actors.runtime import Mailbox, Reply, answer
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.log import SignedCheckpoint, TileSet, TreeHead, origin_for, tiles_for
from vault.domain.merkle import ProofError, consistency_nodes, consistency_proof, verify_consistency
from vault.domain.models import iso_response, utcnow
from vault.domain.note import Signer, Verifier
from vault.ports import MetadataStore

log = structlog.get_logger("vault.ledger")

@attrs.frozen
class Integrate:
    """Leaves were committed: integrate them soon (nudges coalesce)."""


@attrs.frozen
class LogState:
    """The latest signed checkpoint (None while the tree is empty) and the tree's size."""

    checkpoint: SignedCheckpoint | None
    tree_size: int


@attrs.frozen
class Publish:
    """Integrate everything pending and sign a checkpoint of it now."""

    reply: Reply[LogState]


def _asks(batch: list[Integrate | Publish]) -> list[Publish]:
    return [msg for msg in batch if isinstance(msg, Publish)]


class ForkRefused(RuntimeError):
    """The stored tree does not extend the latest signed checkpoint."""


@attrs.frozen
class LogIdentity:
    """Who signs the log: its origin and the key, as a signer and a verifier."""

    signer: Signer

    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()

    @classmethod
    async def load(cls, backends: Backends) -> LogIdentity:
        head = await backends.in_db(backends.store.ledger_head)
        origin = origin_for(backends.settings.ledger_origin, head.log_id)
        return cls(Signer.from_key(origin, backends.ledger_key))


def check_extends(
    store: MetadataStore, previous: SignedCheckpoint, head: TreeHead, verifier: Verifier
) -> None:
    """Raise ``ForkRefused`` unless the tree at ``head`` extends ``previous``. Blocks."""
    if head.size < previous.size:
        raise ForkRefused(f"the tree has {head.size} leaves, {previous.size} were signed")
    if head.size == previous.size:
        if head.tree.root() != previous.root_hash:
            raise ForkRefused(f"the tree of size {head.size} has another root than was signed")
        return
    nodes = consistency_nodes(previous.size, head.size)
    tiles = TileSet(store.ledger_tiles(tiles_for(nodes)))
    try:
        proof = consistency_proof(previous.size, head.size, tiles.get_node)
        verify_consistency(previous.size, head.size, proof, previous.root_hash, head.tree.root())
    except (ProofError, LookupError) as exc:
        raise ForkRefused(f"size {head.size} does not extend size {previous.size}: {exc}") from exc


class LedgerActor:
    name = "ledger"

    def __init__(
        self,
        mailbox: Mailbox[Integrate | Publish],
        backends: Backends,
        identity: LogIdentity,
        *,
        interval: float,
        batch_size: int = 256,
        nudge_gap: float = 0.05,
        outside: Outside | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.outside = outside or Outside()
        mailbox.health.live = self.outside.snapshot
        self.backends = backends
        self.identity = identity
        self.interval = interval
        self.batch_size = batch_size
        self.nudge_gap = nudge_gap
        """How long a nudge waits for the commits right behind it before integrating."""
        self._latest: SignedCheckpoint | None = None

    def nudge(self) -> None:
        """Integrate soon; a nudge while one waits is dropped, and the timer catches up."""
        self.mailbox.tell_nowait(Integrate())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Integrate on nudges, sign every ``interval``; sign once more at close."""
        self._latest = await self.backends.in_db(self.backends.store.latest_checkpoint)
        # What is pending at start (a crash's leftovers, the hash chain a
        # migration opened the log with) is integrated and signed before the
        # actor reports ready: the service starts with its log up to date.
        await self.cycle(sign=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.outside.run)
            self.outside.signed(self._latest)
            task_status.started()
            await self._loop()
            nursery.cancel_scope.cancel()

    async def _loop(self) -> None:
        next_sign = trio.current_time() + self.interval
        while True:
            batch: list[Integrate | Publish] = []
            closed = False
            with trio.move_on_at(next_sign):
                try:
                    batch.append(await self.mailbox.receive_channel.receive())
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    closed = True
            batch.extend(self._queued())
            if not closed and trio.current_time() < next_sign and not _asks(batch):
                # A nudge: let the next few commits join it, so a burst of
                # uploads is integrated in a few transactions, not one each.
                await trio.sleep(min(self.nudge_gap, next_sign - trio.current_time()))
                batch.extend(self._queued())
            asks = _asks(batch)
            due = trio.current_time() >= next_sign
            sign = closed or due or bool(asks)
            try:
                state = await self.cycle(sign=sign)
            except BaseException:
                for msg in asks:
                    msg.reply.close()
                raise
            for msg in asks:
                with msg.reply:
                    answer(msg.reply, state)
            if closed:
                return
            if sign:
                self.outside.signed(self._latest)
                next_sign = trio.current_time() + self.interval

    def _queued(self) -> list[Integrate | Publish]:
        """Every message waiting now (a closed mailbox ends the list; the loop sees it next)."""
        out: list[Integrate | Publish] = []
        while True:
            try:
                out.append(self.mailbox.receive_channel.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return out

    async def cycle(self, *, sign: bool) -> LogState:
        """Integrate every pending leaf, batch by batch; then sign if asked and grown."""
        health = self.mailbox.health
        store = self.backends.store
        while True:
            done = await self.backends.in_db(store.integrate_leaves, self.batch_size, utcnow())
            health.processed += done.added
            if done.added < self.batch_size:
                break
        head = await self.backends.in_db(store.ledger_head)
        if sign and head.size and (self._latest is None or head.size > self._latest.size):
            await self._sign(head)
        pending = await self.backends.in_db(store.pending_leaves)
        health.touch()
        health.extra.update(
            tree_size=head.size,
            pending=pending,
            checkpoint_size=0 if self._latest is None else self._latest.size,
            last_checkpoint_at=None if self._latest is None else iso_response(
                self._latest.signed_at
            ),
        )
        return LogState(self._latest, head.size)

    async def _sign(self, head: TreeHead) -> None:
        store = self.backends.store
        latest = await self.backends.in_db(store.latest_checkpoint)
        if latest is not None and latest.size >= head.size:
            self._latest = latest  # another process signed this far already
            return
        if latest is not None:
            try:
                await self.backends.in_db(
                    check_extends, store, latest, head, self.identity.verifier
                )
            except ForkRefused as exc:
                self.mailbox.health.failed += 1
                self.mailbox.health.record_error(exc)
                log.error("ledger_fork_refused", error=str(exc), signed_size=latest.size)
                return
        root = head.tree.root()
        body = Checkpoint(self.identity.origin, head.size, root)
        note = signed_checkpoint(body, self.identity.signer)
        checkpoint = SignedCheckpoint(head.size, root, note, utcnow())
        await self.backends.in_db(store.add_checkpoint, checkpoint)
        self._latest = checkpoint
        log.info("checkpoint_signed", tree_size=head.size, root_hash=root.hex())
