"""The entity-deletion poller: cascade archival from ``DOCUMENT_VAULT_SQS_URL``.

It long-polls the queue (``DOCUMENT_CONSUMER_MAX_MESSAGES`` at a time,
``DOCUMENT_CONSUMER_WAIT_TIME`` seconds, ``DOCUMENT_CONSUMER_VISIBILITY_TIMEOUT``
when set), unwraps SNS envelopes, asks the archiver for the cascade and
deletes a message only after the archiver has committed it.

*Errors*: a body that can never be processed (not JSON, fields missing or
too long for the ``processed_events`` row) is logged and deleted; so is
an event whose action is not ``entity.deleted``. Any other failure (the
archiver or the store failing, the delete failing) leaves the message for
redelivery after its visibility timeout, and the queue's redrive policy
sets it aside once it has failed often enough. Each such failure counts
in the actor's ``failed`` and ``last_error``. A queue that cannot be
reached is retried with backoff, also counted, rather than crashing the
actor into its restart budget.

*Cancellation*: a long poll runs in an abandonable worker thread, so a stop
never waits for it (messages it may still receive become visible again
after the visibility timeout). Messages already received are finished and
acknowledged inside a shielded scope that gets ``SHUTDOWN_GRACE_SECONDS``
from the stop; what is not finished by then is left to become visible
again. A cancellation from outside (the service's own grace has run out)
ends that scope too. A cascade is cancelled only between its batches, so
nothing is ever half-archived.

With no queue URL, or ``ENABLE_DOCUMENT_CONSUMER=false``, the actor is
``disabled``: healthy, with nothing to do.
"""

from __future__ import annotations

import math
from typing import Final

import attrs
import structlog
import trio

from actors.archiver import ArchiveDocument, ArchiveEntity, EntityArchived
from actors.runtime import Mailbox, ask
from vault.adapters.aws.clients import aws_client
from vault.adapters.aws.queue import QueueMessage, SqsQueue
from vault.config import Settings
from vault.domain.entity_events import ENTITY_DELETED, Unprocessable, parse_entity_event
from vault.domain.errors import DependencyUnavailable, VaultError

log = structlog.get_logger("vault.poller")

RECEIVE_BACKOFF_INITIAL: Final = 1.0
RECEIVE_BACKOFF_MAX: Final = 30.0
"""Waits between attempts while the queue cannot be reached (doubling)."""


@attrs.frozen
class PollRequest:
    """Reserved: the poller takes no requests; its mailbox exists for uniform health."""


class EntityDeletionPoller:
    name = "entity_deletion_poller"

    def __init__(
        self,
        mailbox: Mailbox[PollRequest],
        archiver: Mailbox[ArchiveDocument | ArchiveEntity],
        settings: Settings,
        queue: SqsQueue | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.archiver = archiver
        self.settings = settings
        self._queue = queue

    @property
    def enabled(self) -> bool:
        return self.settings.enable_document_consumer and (
            self._queue is not None or self.settings.document_vault_sqs_url is not None
        )

    def queue(self) -> SqsQueue:
        if self._queue is None:
            url = self.settings.document_vault_sqs_url
            assert url is not None
            client = aws_client(
                self.settings, "sqs", read_timeout=self.settings.document_consumer_wait_time + 10
            )
            self._queue = SqsQueue(client, url)
        return self._queue

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until the mailbox is closed; then finish what is held and return."""
        queue = await trio.to_thread.run_sync(self.queue)
        task_status.started()
        polling = trio.CancelScope()
        finishing = trio.CancelScope(shield=True)

        async def watch_for_stop() -> None:
            try:
                async for _ in self.mailbox.receive_channel:
                    pass
                polling.cancel()
                # Messages already held get the grace period, then are left
                # to become visible again.
                finishing.deadline = trio.current_time() + self.settings.shutdown_grace_seconds
                await trio.sleep_forever()
            except trio.Cancelled:
                # Cancelled from outside: the grace is over for everyone.
                # (After a normal stop this ends a scope that has finished.)
                finishing.cancel()
                raise

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_for_stop)
            with polling:
                failures = 0
                while True:
                    try:
                        messages = await trio.to_thread.run_sync(
                            queue.receive,
                            self.settings.document_consumer_max_messages,
                            self.settings.document_consumer_wait_time,
                            self.settings.document_consumer_visibility_timeout,
                            abandon_on_cancel=True,
                        )
                    except DependencyUnavailable as exc:
                        failures += 1
                        await self._receive_failed(exc, failures)
                        continue
                    failures = 0
                    if messages:
                        with finishing:
                            await self._handle_batch(queue, messages)
                        if finishing.cancelled_caught:
                            break
                        finishing = trio.CancelScope(shield=True)
            nursery.cancel_scope.cancel()

    async def _receive_failed(self, exc: DependencyUnavailable, failures: int) -> None:
        health = self.mailbox.health
        health.failed += 1
        health.record_error(exc)
        health.touch()
        delay = min(RECEIVE_BACKOFF_MAX, RECEIVE_BACKOFF_INITIAL * 2 ** (failures - 1))
        log.warning("entity_queue_unavailable", error=str(exc), retry_in=delay)
        await trio.sleep(delay)

    async def _handle_batch(self, queue: SqsQueue, messages: list[QueueMessage]) -> None:
        """One message after another, each acknowledged as soon as it is done."""
        health = self.mailbox.health
        for message in messages:
            health.in_flight += 1
            try:
                await self._handle(queue, message)
                health.processed += 1
            except VaultError as exc:
                health.failed += 1
                health.record_error(exc)
                log.warning("entity_event_left_for_redelivery", message_id=message.message_id,
                            error=str(exc), error_type=type(exc).__name__)
            finally:
                health.in_flight -= 1
                health.touch()

    async def _handle(self, queue: SqsQueue, message: QueueMessage) -> None:
        try:
            event = parse_entity_event(message.body)
        except Unprocessable as exc:
            log.error("entity_event_unprocessable", message_id=message.message_id, error=str(exc))
            await self._delete(queue, message)
            return
        if event.action != ENTITY_DELETED:
            log.info("entity_event_ignored", event_id=event.event_id, action=event.action)
            await self._delete(queue, message)
            return
        result = await ask(
            self.archiver,
            lambda reply: ArchiveEntity(
                event_id=event.event_id,
                source=event.source,
                action=event.action,
                entity_id=event.entity_id,
                entity_type=event.entity_type,
                reply=reply,
            ),
            deadline=math.inf,
            returns=EntityArchived,
        )
        await self._delete(queue, message)
        log.info("entity_event_processed", event_id=event.event_id, message_id=message.message_id,
                 archived=result.count, duplicate=result.count is None)

    async def _delete(self, queue: SqsQueue, message: QueueMessage) -> None:
        # Abandonable: once the work is committed, a delete cut short by the
        # end of the grace period only means one more (no-op) delivery.
        await trio.to_thread.run_sync(queue.delete, message.receipt_handle, abandon_on_cancel=True)
