"""Assembling the actors: every mailbox size and concurrency bound is here.

``run_vault`` starts each actor under its supervisor with ``nursery.start``,
so it reports ready (``task_status.started(vault)``) only once every actor
can take messages; the HTTP port opens after that.

Shutdown order (``Vault.stop``): producers first (poller, upload, verifier,
archiver) finish what they hold, then the publishers drain the outbox one
last time and the ledger integrates and signs what is left; whatever is
still running when the grace period ends is cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import structlog
import trio

from actors.access import Authorizer, MatrixAuthorizer, ServiceAuthorizer
from actors.archiver import ArchiveDocument, ArchiveEntity, ArchiverActor
from actors.deps import Backends
from actors.dispositions import Dispositions
from actors.freezes import Freezes
from actors.integrity_reads import Incidents
from actors.keeper import RetentionKeeper
from actors.ledger import Integrate, LedgerActor, LogIdentity, LogState, Publish
from actors.log_reads import LogReads
from actors.outside import build as build_outside
from actors.poller import EntityDeletionPoller, PollRequest
from actors.publisher import Nudge, PublisherActor, PublishPolicy
from actors.reads import Reads
from actors.records import Records
from actors.runtime import ActorHealth, ActorState, Mailbox, RestartPolicy, ask, supervise
from actors.sweep import LULL_SECONDS
from actors.traffic import Traffic
from actors.upload import StoreDocument, UploadActor
from actors.verifier import VerifierActor, VerifyDocument
from vault.config import Settings
from vault.domain.events import Destination

log = structlog.get_logger("vault.system")


@attrs.frozen
class Sizing:
    """Mailbox capacities and concurrency bounds, one place to tune them."""

    upload_mailbox: int = 64
    upload_concurrency: int = 16
    verifier_mailbox: int = 64
    verifier_concurrency: int = 4
    sweep_lull: float = LULL_SECONDS
    """The longest the sweep waits for no client request in flight before a document."""
    archiver_mailbox: int = 64
    archiver_concurrency: int = 4
    publisher_mailbox: int = 1
    ledger_mailbox: int = 64
    ledger_batch: int = 256
    """Leaves integrated a transaction."""
    ledger_publish_wait: float = 5.0
    """How long a verification waits for room in the ledger's mailbox to ask for a checkpoint."""
    poller_mailbox: int = 1
    permission_lookups: int = 10
    """Calls to the permissions service in flight at once (threads and connections)."""
    restart: RestartPolicy = attrs.field(factory=RestartPolicy)
    publish: PublishPolicy = attrs.field(factory=PublishPolicy)


@attrs.define
class Vault:
    """Handles to the running actors, for the HTTP layer and the poller."""

    backends: Backends
    upload: Mailbox[StoreDocument]
    verifier: Mailbox[VerifyDocument]
    archiver: Mailbox[ArchiveDocument | ArchiveEntity]
    audit_publisher: PublisherActor
    alerter: PublisherActor
    poller: Mailbox[PollRequest]
    ledger: Mailbox[Integrate | Publish]
    log: LogIdentity
    reads: Reads
    log_reads: LogReads
    incidents: Incidents
    freezes: Freezes
    records: Records
    dispositions: Dispositions
    traffic: Traffic = attrs.field(factory=Traffic)
    """Client requests in flight (counted by the HTTP layer); the sweep waits for a lull."""
    _done: dict[str, trio.Event] = attrs.field(factory=dict)
    _cancel: trio.CancelScope | None = None

    @property
    def mailboxes(self) -> list[Mailbox[Any]]:
        return [
            self.upload,
            self.verifier,
            self.archiver,
            self.audit_publisher.mailbox,
            self.alerter.mailbox,
            self.poller,
            self.ledger,
        ]

    def health(self) -> list[ActorHealth]:
        return [m.health for m in self.mailboxes]

    def health_of(self, name: str) -> ActorHealth | None:
        for mailbox in self.mailboxes:
            if mailbox.name == name:
                return mailbox.health
        return None

    async def stop(self, grace: float) -> None:
        """Close mailboxes in order and wait for the actors, at most ``grace`` seconds."""
        with trio.move_on_after(grace) as scope:
            stages: tuple[list[Mailbox[Any]], ...] = (
                [self.poller],
                [self.upload, self.verifier, self.archiver],
                [self.audit_publisher.mailbox, self.alerter.mailbox, self.ledger],
            )
            for stage in stages:
                for mailbox in stage:
                    if mailbox.health.state is not ActorState.DISABLED:
                        mailbox.health.state = ActorState.STOPPING
                    mailbox.close()
                for mailbox in stage:
                    done = self._done.get(mailbox.name)
                    if done is not None:
                        await done.wait()
        if scope.cancelled_caught:
            log.warning("shutdown_grace_exceeded", grace_seconds=grace)
        if self._cancel is not None:
            self._cancel.cancel()


def authorizer_for(settings: Settings, sizing: Sizing) -> Authorizer:
    """The role matrix under ``EPR_MOCK_MODE=true``, else the permission service."""
    if settings.epr_mock_mode:
        return MatrixAuthorizer()
    return ServiceAuthorizer.from_settings(settings, lookups=sizing.permission_lookups)


async def run_vault(
    backends: Backends,
    sizing: Sizing | None = None,
    *,
    traffic: Traffic | None = None,
    task_status: trio.TaskStatus[Vault] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every actor until ``Vault.stop`` (or cancellation); ``traffic`` counts the
    client requests in flight (a new count when not given)."""
    sizing = sizing or Sizing()
    settings = backends.settings
    # The lease is the operator's (OUTBOX_LEASE_SECONDS): a restart after a
    # crash waits at most that long for the rows the dead process held.
    publish = attrs.evolve(sizing.publish, lease_seconds=settings.outbox_lease_seconds)
    audit_publisher = PublisherActor(
        "audit_publisher",
        Mailbox[Nudge]("audit_publisher", sizing.publisher_mailbox),
        backends,
        (Destination.DOCUMENT_EVENTS, Destination.AUDIT_EVENTS),
        publish,
    )
    alerter = PublisherActor(
        "alerter",
        Mailbox[Nudge]("alerter", sizing.publisher_mailbox),
        backends,
        (Destination.INTEGRITY_ALERTS, Destination.INCIDENT_NOTIFICATIONS),
        publish,
    )
    identity = await LogIdentity.load(backends)
    ledger_mailbox = Mailbox[Integrate | Publish]("ledger", sizing.ledger_mailbox)
    outside = build_outside(backends, identity.verifier, mirror=backends.log_mirror)
    ledger = LedgerActor(
        ledger_mailbox, backends, identity,
        interval=settings.ledger_checkpoint_interval_seconds, batch_size=sizing.ledger_batch,
        outside=outside,
    )

    keeper = RetentionKeeper(backends)

    def committed() -> None:
        audit_publisher.nudge()
        ledger.nudge()
        keeper.nudge()  # an upload under a policy, or into a held entity

    def records_changed() -> None:
        audit_publisher.nudge()
        keeper.nudge()

    def changed_freeze() -> None:
        audit_publisher.nudge()  # entity.frozen / entity.unfrozen
        alerter.nudge()  # their notifications

    async def sign_now() -> LogState:
        deadline = trio.current_time() + sizing.ledger_publish_wait
        return await ask(ledger_mailbox, Publish, deadline=deadline, returns=LogState)

    vault = Vault(
        backends=backends,
        upload=Mailbox("upload", sizing.upload_mailbox),
        verifier=Mailbox("verifier", sizing.verifier_mailbox),
        archiver=Mailbox("archiver", sizing.archiver_mailbox),
        audit_publisher=audit_publisher,
        alerter=alerter,
        poller=Mailbox("entity_deletion_poller", sizing.poller_mailbox),
        ledger=ledger_mailbox,
        log=identity,
        reads=Reads(backends, committed=audit_publisher.nudge),
        log_reads=LogReads(
            backends, retry_after=max(1, math.ceil(settings.ledger_checkpoint_interval_seconds)),
            witnessed=outside.witnessed,
        ),
        incidents=Incidents(backends, committed=alerter.nudge),
        freezes=Freezes(backends, committed=changed_freeze),
        records=Records(backends, committed=records_changed),
        dispositions=Dispositions(backends, committed=committed),
        traffic=traffic or Traffic(),
    )
    upload = UploadActor(
        vault.upload, backends, concurrency=sizing.upload_concurrency, committed=committed,
    )
    verifier = VerifierActor(
        vault.verifier, backends, concurrency=sizing.verifier_concurrency,
        committed=committed, alerted=alerter.nudge, publish=sign_now, verifier=identity.verifier,
        traffic=vault.traffic, sweep_lull=sizing.sweep_lull,
    )
    archiver = ArchiverActor(
        vault.archiver, backends, concurrency=sizing.archiver_concurrency, committed=committed,
        keeper=keeper,
    )
    poller = EntityDeletionPoller(vault.poller, vault.archiver, settings)

    async with trio.open_nursery() as nursery:
        vault._cancel = nursery.cancel_scope
        order: list[tuple[Mailbox[Any], Callable[..., Awaitable[None]]]] = [
            (audit_publisher.mailbox, audit_publisher.run),
            (alerter.mailbox, alerter.run),
            (ledger_mailbox, ledger.run),
            (vault.upload, upload.run),
            (vault.verifier, verifier.run),
            (vault.archiver, archiver.run),
        ]
        if poller.enabled:
            order.append((vault.poller, poller.run))
        else:
            vault.poller.health.state = ActorState.DISABLED
        for mailbox, run in order:
            done = trio.Event()
            vault._done[mailbox.name] = done
            await nursery.start(_supervised, mailbox, run, sizing.restart, done)
        log.info("actors_started", actors=[m.name for m in vault.mailboxes])
        task_status.started(vault)


async def _supervised(
    mailbox: Mailbox[Any],
    run: Callable[..., Awaitable[None]],
    policy: RestartPolicy,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await supervise(mailbox, run, policy, task_status=task_status)
    finally:
        done.set()
