"""What the ledger actor sends its checkpoints out to: witnesses, anchors, the S3 mirror.

``Outside`` bundles the parts the configuration asks for (``build``) and
runs them beside the ledger's own loop, in its nursery; the ledger tells it
of every checkpoint it signs (``signed``). Each part keeps its own state
for health (``snapshot``: the ledger actor's snapshot and /metrics read
it when asked) and retries on its own; none ever holds up signing.
"""

from __future__ import annotations

from datetime import datetime

import attrs
import trio

from actors.anchoring import Anchoring, chain_step, timestamp_step
from actors.deps import Backends
from actors.log_reads import published
from actors.mirroring import Mirroring
from actors.witnessing import Witnessing
from vault.adapters.blobs.log_mirror import S3LogMirror
from vault.adapters.evm import EvmClient
from vault.adapters.timestamps import TimestampClient
from vault.domain.log import SignedCheckpoint
from vault.domain.models import utcnow
from vault.domain.note import Verifier
from vault.domain.publication import AnchorKind

CHAIN_POLL_SECONDS = 5.0
"""How often a sent transaction is looked at until it has its confirmations."""


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


@attrs.define
class Outside:
    witnessing: Witnessing | None = None
    anchoring: tuple[Anchoring, ...] = ()
    mirroring: Mirroring | None = None
    checkpoint_size: int = 0

    @property
    def witnessed(self) -> bool:
        return self.witnessing is not None

    def signed(self, checkpoint: SignedCheckpoint | None) -> None:
        if checkpoint is None:
            return
        self.checkpoint_size = max(self.checkpoint_size, checkpoint.size)
        if self.witnessing is not None:
            self.witnessing.signed(checkpoint)
        for part in self.anchoring:
            part.signed()
        if self.mirroring is not None and self.witnessing is None:
            self.mirroring.changed()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            if self.witnessing is not None:
                nursery.start_soon(self.witnessing.run)
            for part in self.anchoring:
                nursery.start_soon(part.run)
            if self.mirroring is not None:
                nursery.start_soon(self.mirroring.run)

    def snapshot(self) -> dict[str, object]:
        """Health's view: published size, each witness, each anchor kind, the mirror."""
        now = utcnow()
        out: dict[str, object] = {
            "published_size": self.witnessing.published_size if self.witnessing is not None
            else self.checkpoint_size,
        }
        if self.witnessing is not None:
            out["witnesses"] = self.witnessing.snapshot()
        if self.anchoring:
            out["anchors"] = {
                part.kind.value: {
                    **part.status.snapshot(),
                    "age_seconds": _age(part.status.last_anchored_at, now),
                }
                for part in self.anchoring
            }
        if self.mirroring is not None:
            out["mirror"] = self.mirroring.status.snapshot()
        return out


def build(
    backends: Backends,
    verifier: Verifier,
    *,
    mirror: S3LogMirror | None = None,
) -> Outside:
    """The parts ``backends.settings`` configures (none: an ``Outside`` that does nothing)."""
    settings = backends.settings
    outside = Outside()
    if settings.ledger_witnesses:
        outside.witnessing = Witnessing(
            backends, settings.ledger_witnesses, settings.witness_quorum,
        )
    anchoring = []
    if settings.ledger_tsa_url is not None:
        tsa = TimestampClient(settings.ledger_tsa_url, certs=list(settings.ledger_tsa_certs))
        anchoring.append(Anchoring(
            backends, AnchorKind.RFC3161, timestamp_step(tsa),
            interval=settings.ledger_timestamp_interval_seconds, close=tsa.close,
        ))
    if settings.blockchain_endpoint_url is not None:
        assert settings.blockchain_private_key is not None  # checked with the settings
        assert settings.blockchain_chain_id is not None
        chain = EvmClient(
            settings.blockchain_endpoint_url, private_key=settings.blockchain_private_key,
            chain_id=settings.blockchain_chain_id,
        )
        poll = min(CHAIN_POLL_SECONDS, settings.ledger_anchor_interval_seconds)
        anchoring.append(Anchoring(
            backends, AnchorKind.EVM, chain_step(chain, settings.blockchain_confirmations, poll),
            interval=settings.ledger_anchor_interval_seconds, close=chain.close,
        ))
    outside.anchoring = tuple(anchoring)
    if mirror is not None:
        witnessed = outside.witnessed
        outside.mirroring = Mirroring(
            backends, mirror, verifier, lambda store: published(store, witnessed)
        )
        if outside.witnessing is not None:
            outside.witnessing.on_publish = outside.mirroring.changed
    return outside
