"""The archiver actor: soft archive of one document, or of every document of an entity.

Archiving is idempotent: archiving an archived document answers the same
and announces nothing new. A cascade (an entity deleted upstream) archives
every live document of the entity together with the ``processed_events``
row, in one transaction, so a redelivered event changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
import structlog
import trio
from structlog.contextvars import bound_contextvars

from actors.deps import Backends
from actors.runtime import Mailbox, answer, serve_mailbox
from vault.errors import VaultError
from vault.events import archive_events
from vault.models import Actor, Document, utcnow

log = structlog.get_logger("vault.archiver")


@attrs.frozen
class ArchiveDocument:
    """Archive one document on behalf of a user."""

    document_id: UUID
    actor: Actor
    correlation_id: str | None
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class ArchiveEntity:
    """Archive every live document of an entity the permissions service deleted."""

    event_id: str
    source: str
    action: str
    entity_id: UUID
    entity_type: str
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class Archived:
    document: Document
    changed: bool


@attrs.frozen
class EntityArchived:
    """How a cascade went: ``count`` is None when the event was already processed."""

    count: int | None


class ArchiverActor:
    name = "archiver"

    def __init__(
        self,
        mailbox: Mailbox[ArchiveDocument | ArchiveEntity],
        backends: Backends,
        *,
        concurrency: int,
        committed: Callable[[], None],
    ) -> None:
        self.mailbox = mailbox
        self.backends = backends
        self.concurrency = concurrency
        self.committed = committed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every archive: ``concurrency`` at a time."""
        await serve_mailbox(
            self.mailbox, self._handle, concurrency=self.concurrency, task_status=task_status
        )

    async def _handle(self, msg: ArchiveDocument | ArchiveEntity) -> None:
        request_id = msg.correlation_id if isinstance(msg, ArchiveDocument) else msg.event_id
        with msg.reply, bound_contextvars(request_id=request_id):
            try:
                match msg:
                    case ArchiveDocument():
                        result: Any = await self._archive_document(msg)
                    case ArchiveEntity():
                        result = await self._archive_entity(msg)
            except VaultError as exc:
                answer(msg.reply, exc)
            else:
                answer(msg.reply, result)

    async def _archive_document(self, msg: ArchiveDocument) -> Archived:
        at = utcnow()
        doc, changed = await self.backends.in_db(
            lambda: self.backends.store.archive_document(
                msg.document_id,
                archived_by=msg.actor.id,
                archived_at=at,
                events=lambda d: archive_events(d, msg.actor, msg.correlation_id, at),
            )
        )
        if changed:
            self.committed()
            log.info("document_archived", document_id=str(doc.id),
                     correlation_id=msg.correlation_id)
        return Archived(doc, changed)

    async def _archive_entity(self, msg: ArchiveEntity) -> EntityArchived:
        at: datetime = utcnow()
        system = Actor.system()
        count = await self.backends.in_db(
            lambda: self.backends.store.archive_entity(
                event_id=msg.event_id,
                source=msg.source,
                action=msg.action,
                entity_id=msg.entity_id,
                entity_type=msg.entity_type,
                archived_at=at,
                events=lambda d: archive_events(d, system, msg.event_id, at,
                                                reason="entity_deleted"),
            )
        )
        if count:
            self.committed()
        log.info("entity_archived", entity_id=str(msg.entity_id), event_id=msg.event_id,
                 archived=count, duplicate=count is None)
        return EntityArchived(count)
