"""The store's side of what the log's checkpoints became outside, and integrity.

Witness cosignatures, published checkpoints and anchor jobs; the integrity
sweep's claims and coverage; entity freezes and incidents. ``MetadataStore``
(``vault.ports``) includes all of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from vault.domain.freezes import FreezeState
from vault.domain.incidents import Incident, IncidentStatus
from vault.domain.integrity import Coverage
from vault.domain.models import Actor
from vault.domain.publication import AnchorJob, AnchorKind, PublishedCheckpoint, StoredAnchor
from vault.ports.pages import PageCursor


class OutsideStore(Protocol):
    # -- the log's checkpoints outside ---------------------------------------

    def add_cosignature(self, witness: str, size: int, line: str, at: datetime) -> None:
        """Keep ``witness``'s cosignature line on the checkpoint of ``size`` (once)."""

    def cosignatures_at(self, size: int) -> dict[str, str]:
        """Each witness's cosignature line on the checkpoint of ``size``."""

    def witness_sizes(self) -> dict[str, int]:
        """The largest checkpoint size each witness cosigned."""

    def publish_checkpoint(self, size: int, note: str, at: datetime) -> None:
        """Keep the cosigned note of a checkpoint that met the quorum (once a size)."""

    def latest_published(self) -> PublishedCheckpoint | None: ...

    def published_at(self, size: int) -> PublishedCheckpoint | None: ...

    def schedule_anchor(self, kind: AnchorKind, size: int, at: datetime) -> bool:
        """Write a pending job for the checkpoint of ``size``; False if it has one."""

    def last_anchor(self, kind: AnchorKind) -> AnchorJob | None:
        """The job of the largest checkpoint size of ``kind``, whatever its state."""

    def claim_anchor(
        self, kind: AnchorKind, now: datetime, lease_seconds: float
    ) -> AnchorJob | None:
        """Lease the oldest unfinished job of ``kind`` whose lease ran out, if any."""

    def save_anchor(self, job: AnchorJob, retry_at: datetime | None) -> None:
        """Write an unfinished job's progress; leased until ``retry_at`` (None: free)."""

    def finish_anchor(self, anchor: StoredAnchor) -> None:
        """Mark the job done with the authority's answer; a done job never changes."""

    def anchors_covering(self, leaf_index: int) -> list[StoredAnchor]:
        """Per kind, the first finished anchor whose checkpoint holds leaf ``leaf_index``."""

    def newest_anchor(self, kind: AnchorKind) -> StoredAnchor | None: ...

    # -- the integrity sweep -------------------------------------------------

    def claim_sweep(
        self, now: datetime, cutoff: datetime, lease_seconds: float, limit: int
    ) -> list[UUID]:
        """Lease up to ``limit`` documents last verified before ``cutoff`` (never first)."""

    def release_sweep(self, document_id: UUID, now: datetime) -> None:
        """Hand a claimed document back (its verification did not happen)."""

    def sweep_pass_completed(self, at: datetime) -> None: ...

    def last_sweep_pass(self) -> datetime | None: ...

    def integrity_coverage(self, now: datetime, period: timedelta) -> Coverage:
        """How many documents were verified within ``period`` before ``now``, and the rest."""

    # -- entity freezes --------------------------------------------------------

    def entity_freeze(self, entity_id: UUID) -> FreezeState:
        """The entity's freeze as it stands (not frozen when never frozen)."""

    def set_freeze(
        self, entity_id: UUID, *, frozen: bool, actor: Actor, reason: str,
        correlation_id: str | None, at: datetime,
    ) -> tuple[FreezeState, bool]:
        """Freeze or unfreeze with its audit event; False when it was so already."""

    # -- incidents -----------------------------------------------------------

    def get_incident(self, incident_id: UUID) -> Incident:
        """``IncidentNotFound`` when there is none."""

    def list_incidents(
        self, *, entity_id: UUID | None, status: IncidentStatus | None, limit: int,
        after: PageCursor | None,
    ) -> list[Incident]:
        """Up to ``limit`` incidents, newest opened first (opened_at desc, incident_id desc)."""

    def resolve_incident(
        self, incident_id: UUID, *, resolved_by: UUID | None, resolution: str, at: datetime
    ) -> Incident:
        """Close an open incident; ``IncidentNotFound``, or ``IncidentResolved`` if closed."""
