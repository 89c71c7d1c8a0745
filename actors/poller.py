"""The entity-deletion poller: cascade archival from ``DOCUMENT_VAULT_SQS_URL``.

It long-polls the queue, unwraps SNS envelopes, asks the archiver for the
cascade and deletes a message only after the archiver's commit. A body
that can never be processed is logged and deleted; any other failure
leaves the message for redelivery.

Cancellation: a long poll runs in an abandonable worker thread, so a stop
never waits for it (messages it may still receive become visible again
after the queue's visibility timeout). Messages already received are
finished and acknowledged inside a shielded grace period.

With no queue URL, or ``ENABLE_DOCUMENT_CONSUMER=false``, the actor is
``disabled``: healthy, with nothing to do.
"""

from __future__ import annotations

import math

import attrs
import structlog
import trio

from actors.archiver import ArchiveDocument, ArchiveEntity, EntityArchived
from actors.runtime import Mailbox, ask
from vault.config import Settings
from vault.errors import VaultError
from vault.sqs import QueueMessage, SqsQueue, Unprocessable, aws_client, parse_entity_event

log = structlog.get_logger("vault.poller")

ENTITY_DELETED = "entity.deleted"


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
        async with trio.open_nursery() as nursery:
            polling = trio.CancelScope()
            finishing = trio.CancelScope(shield=True)

            async def watch_for_stop() -> None:
                async for _ in self.mailbox.receive_channel:
                    pass
                polling.cancel()
                # Messages already held get the grace period, then are left
                # to become visible again.
                finishing.deadline = trio.current_time() + self.settings.shutdown_grace_seconds

            nursery.start_soon(watch_for_stop)
            with polling:
                while True:
                    messages = await trio.to_thread.run_sync(
                        queue.receive,
                        self.settings.document_consumer_max_messages,
                        self.settings.document_consumer_wait_time,
                        self.settings.document_consumer_visibility_timeout,
                        abandon_on_cancel=True,
                    )
                    if messages:
                        with finishing:
                            await self._handle_batch(queue, messages)
                        finishing = trio.CancelScope(shield=True)
            nursery.cancel_scope.cancel()

    async def _handle_batch(self, queue: SqsQueue, messages: list[QueueMessage]) -> None:
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
                            error=str(exc))
            finally:
                health.in_flight -= 1
                health.touch()

    async def _handle(self, queue: SqsQueue, message: QueueMessage) -> None:
        try:
            event = parse_entity_event(message.body)
        except Unprocessable as exc:
            log.error("entity_event_unprocessable", message_id=message.message_id, error=str(exc))
            await trio.to_thread.run_sync(queue.delete, message.receipt_handle)
            return
        if event.action != ENTITY_DELETED:
            log.info("entity_event_ignored", event_id=event.event_id, action=event.action)
            await trio.to_thread.run_sync(queue.delete, message.receipt_handle)
            return
        result: EntityArchived = await ask(
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
        )
        await trio.to_thread.run_sync(queue.delete, message.receipt_handle)
        log.info("entity_event_processed", event_id=event.event_id, archived=result.count)
