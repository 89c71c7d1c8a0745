"""Event sinks: where the publishers hand outbox rows.

``LogSink`` is the embedded default's sink for a destination whose queue or
topic is not configured: each event is written to the structured log, and
the row stays in the outbox marked delivered, so nothing is lost and an
operator can still read every event back from the database.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from vault.domain.events import OutboxRow
from vault.ports import Delivery

log = structlog.get_logger("vault.events")


class LogSink:
    """Writes each event to the log as ``event_published`` and reports it delivered."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        for row in rows:
            log.info(
                "event_published",
                sink=self.name,
                destination=row.event.destination.value,
                event_id=str(row.event.event_id),
                attributes=row.event.attributes,
                body=row.event.body,
            )
        return [Delivery(row.id, ok=True) for row in rows]
