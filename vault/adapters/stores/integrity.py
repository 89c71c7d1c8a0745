"""The integrity sweep's half of the SQL store: claims with a lease, passes, coverage.

``claim_sweep`` picks up to ``limit`` documents due (never verified first,
then the oldest ``hash_verified_at``) whose claim is free, and takes each
with one compare-and-set upsert of its lease: of two processes asking at
once, one gets a document, the other the next. The lease only has to
outlast one verification: that verification moves ``hash_verified_at``,
and the document is not due again within the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from vault.adapters.stores.outside import SqlLogOutside
from vault.adapters.stores.rows import as_optional_datetime, as_uuid
from vault.adapters.stores.sql import Q
from vault.domain.integrity import Coverage, period_cutoff

# Two index walks, never a sort of everything due: never-verified documents
# in upload order (a partial index), then the oldest verifications.
SWEEP_NEVER = Q(
    "SELECT d.id AS id FROM documents d"
    " LEFT JOIN integrity_sweep_claims c ON c.document_id = d.id"
    " WHERE d.hash_verified_at IS NULL AND d.status <> 'disposed'"
    " AND (c.leased_until IS NULL OR c.leased_until <= $now)"
    " ORDER BY d.created_at, d.id LIMIT $limit"
)
SWEEP_OLDEST = Q(
    "SELECT d.id AS id FROM documents d"
    " LEFT JOIN integrity_sweep_claims c ON c.document_id = d.id"
    " WHERE d.hash_verified_at < $cutoff AND d.status <> 'disposed'"
    " AND (c.leased_until IS NULL OR c.leased_until <= $now)"
    " ORDER BY d.hash_verified_at, d.id LIMIT $limit"
)
CANDIDATES_PER_CLAIM = 8
"""Due documents read for each one wanted: a claim lost to another process
moves on to the next candidate instead of coming back empty."""
SWEEP_CLAIM = Q(
    "INSERT INTO integrity_sweep_claims (document_id, leased_until) VALUES ($id, $until)"
    " ON CONFLICT (document_id) DO UPDATE SET leased_until = excluded.leased_until"
    " WHERE integrity_sweep_claims.leased_until <= $now"
)
SWEEP_RELEASE = Q(
    "UPDATE integrity_sweep_claims SET leased_until = $now WHERE document_id = $id"
)
PASS_DONE = Q(
    "INSERT INTO integrity_sweep (id, last_pass_completed_at) VALUES (1, $at)"
    " ON CONFLICT (id) DO UPDATE SET last_pass_completed_at = excluded.last_pass_completed_at"
)
PASS_LAST = Q("SELECT last_pass_completed_at FROM integrity_sweep WHERE id = 1")
COVERAGE = Q(
    "SELECT count(*) AS documents,"
    " coalesce(sum(CASE WHEN hash_verified_at >= $cutoff THEN 1 ELSE 0 END), 0) AS current,"
    " coalesce(sum(CASE WHEN hash_verified_at < $cutoff THEN 1 ELSE 0 END), 0) AS overdue,"
    " coalesce(sum(CASE WHEN hash_verified_at IS NULL THEN 1 ELSE 0 END), 0) AS never,"
    " coalesce(sum(CASE WHEN status = 'mismatch' THEN 1 ELSE 0 END), 0) AS mismatched,"
    " min(hash_verified_at) AS oldest"
    " FROM documents WHERE status <> 'disposed'"  # a tombstone has nothing left to verify
)


class SqlIntegrity(SqlLogOutside):
    """The sweep's claims and coverage of every SQL ``MetadataStore``."""

    def claim_sweep(
        self, now: datetime, cutoff: datetime, lease_seconds: float, limit: int
    ) -> list[UUID]:
        until = now + timedelta(seconds=lease_seconds)
        wanted = limit * CANDIDATES_PER_CLAIM
        taken: list[UUID] = []
        asks: list[tuple[Q, dict[str, object]]] = [
            (SWEEP_NEVER, {"now": now, "limit": wanted}),
            (SWEEP_OLDEST, {"cutoff": cutoff, "now": now, "limit": wanted}),
        ]
        for query, params in asks:
            with self._reading("claim_sweep") as db:
                due = [as_uuid(r["id"]) for r in db.all(query, **params)]
            for document_id in due:
                with self._statement("claim_sweep") as db:
                    if db.execute(SWEEP_CLAIM, id=document_id, until=until, now=now) == 1:
                        taken.append(document_id)
                if len(taken) == limit:
                    return taken
        return taken

    def release_sweep(self, document_id: UUID, now: datetime) -> None:
        with self._statement("release_sweep") as db:
            db.execute(SWEEP_RELEASE, id=document_id, now=now)

    def sweep_pass_completed(self, at: datetime) -> None:
        with self._statement("sweep_pass_completed") as db:
            db.execute(PASS_DONE, at=at)

    def last_sweep_pass(self) -> datetime | None:
        with self._reading("last_sweep_pass") as db:
            row = db.one(PASS_LAST)
        return None if row is None else as_optional_datetime(row["last_pass_completed_at"])

    def integrity_coverage(self, now: datetime, period: timedelta) -> Coverage:
        with self._reading("integrity_coverage") as db:
            row = db.one(COVERAGE, cutoff=period_cutoff(now, period))
        assert row is not None  # an aggregate always answers one row
        return Coverage(
            at=now, period=period, documents=int(row["documents"]),
            verified_within_period=int(row["current"]), overdue=int(row["overdue"]),
            never_verified=int(row["never"]), mismatched=int(row["mismatched"]),
            oldest_verification_at=as_optional_datetime(row["oldest"]),
        )
