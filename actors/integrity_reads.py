"""The integrity sweep's coverage (``GET /api/v1/integrity/status``) and incidents.

Read from the database (every process's verifications count), with the
sweep's configuration; like the other reads it changes nothing and goes to
the store in a worker thread through the database limiter.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

import attrs
import structlog

from actors.deps import Backends
from vault.domain.incidents import Incident, IncidentStatus
from vault.domain.integrity import Coverage
from vault.domain.models import Actor, utcnow
from vault.ports import PageCursor

log = structlog.get_logger("vault.integrity")

DEFAULT_PERIOD_HOURS = 168.0
"""What coverage is measured against while the sweep is off."""


@attrs.frozen
class IntegrityStatus:
    period_hours: float
    coverage: Coverage
    sweep_enabled: bool
    bytes_per_second: float
    last_pass_completed_at: datetime | None


async def integrity_status(backends: Backends) -> IntegrityStatus:
    settings = backends.settings
    enabled = settings.integrity_sweep_period_hours > 0
    hours = settings.integrity_sweep_period_hours if enabled else DEFAULT_PERIOD_HOURS
    store = backends.store
    coverage = await backends.in_db(store.integrity_coverage, utcnow(), timedelta(hours=hours))
    last = await backends.in_db(store.last_sweep_pass)
    return IntegrityStatus(
        period_hours=hours, coverage=coverage, sweep_enabled=enabled,
        bytes_per_second=settings.integrity_sweep_max_mb_per_second * 1_000_000,
        last_pass_completed_at=last,
    )


class Incidents:
    """Listing and resolving incidents (a resolution is one transaction, in a worker thread,
    with its notification; the alerter is nudged after it)."""

    def __init__(self, backends: Backends, *, committed: Callable[[], None]) -> None:
        self.backends = backends
        self.committed = committed

    async def list(
        self, *, entity_id: UUID | None, status: IncidentStatus | None, limit: int,
        after: PageCursor | None,
    ) -> list[Incident]:
        store = self.backends.store
        return await self.backends.in_db(
            lambda: store.list_incidents(
                entity_id=entity_id, status=status, limit=limit, after=after
            )
        )

    async def resolve(self, incident_id: UUID, actor: Actor, resolution: str) -> Incident:
        store = self.backends.store
        at = utcnow()
        resolved = await self.backends.in_db(
            lambda: store.resolve_incident(
                incident_id, resolved_by=actor.id, resolution=resolution, at=at
            )
        )
        self.committed()
        log.info("incident_resolved", incident_id=str(incident_id), resolved_by=str(actor.id))
        return resolved

    async def get(self, incident_id: UUID) -> Incident:
        return await self.backends.in_db(self.backends.store.get_incident, incident_id)
