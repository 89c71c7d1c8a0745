"""The outbox half of the SQL ``MetadataStore``: claims, marks, pruning, parked rows.

Rows are written by the document changes that cause them, in the same
transaction (``insert_events``); publishers claim them with a lease
(``CLAIM_OUTBOX``: ``{skip_locked}`` on PostgreSQL, and a claim skips a
group with an earlier undelivered row, so a document's events reach each
destination in order), mark them delivered or failed, park them when a
destination refuses them for good, and prune delivered rows past their
retention. Operators list, requeue and drop parked rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Final

from vault.adapters.stores import queries as q
from vault.adapters.stores.rows import as_optional_datetime, event_values, outbox_row_from_row
from vault.adapters.stores.sql import Q, Row, Session, chunks
from vault.domain.errors import StoreUnavailable
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.ports import OutboxStats, ParkedRow

MAX_IDS_PER_STATEMENT: Final = 500
"""Keeps ``id IN (...)`` well under SQLite's bound-parameter limit."""


class SqlOutbox:
    """The outbox methods of every SQL ``MetadataStore``, over a dialect's sessions."""

    # -- what a dialect supplies -------------------------------------------

    def _reading(self, operation: str) -> AbstractContextManager[Session]:
        """A session for plain reads; driver errors become ``StoreUnavailable``."""
        raise NotImplementedError

    def _statement(self, operation: str) -> AbstractContextManager[Session]:
        """A session for writes that are one statement each."""
        raise NotImplementedError

    def _transaction(self, operation: str) -> AbstractContextManager[Session]:
        """A session whose statements commit together, rolled back on any error."""
        raise NotImplementedError

    def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        with self._transaction("append_events") as db:
            insert_events(db, events)

    def claim_outbox(
        self, destinations: Sequence[Destination], limit: int, now: datetime, lease_seconds: float
    ) -> list[OutboxRow]:
        if not destinations or limit < 1:
            return []
        with self._statement("claim_outbox") as db:
            rows = db.all(
                q.CLAIM_OUTBOX,
                destinations=[Destination(d) for d in destinations],
                now=now,
                limit=limit,
                leased_until=now + timedelta(seconds=lease_seconds),
            )
        return sorted((outbox_row_from_row(row) for row in rows), key=lambda r: r.id)

    def mark_delivered(self, row_ids: Sequence[int], at: datetime) -> None:
        if not row_ids:
            return
        with self._statement("mark_delivered") as db:
            for chunk in chunks(row_ids, MAX_IDS_PER_STATEMENT):
                db.execute(q.MARK_DELIVERED, at=at, ids=list(chunk))

    def mark_failed(self, row_id: int, error: str, retry_at: datetime) -> None:
        with self._statement("mark_failed") as db:
            db.execute(q.MARK_FAILED, error=error, retry_at=retry_at, id=row_id)

    def park(self, row_id: int, error: str, at: datetime) -> None:
        """Set a row aside for good; its ``attempts`` count is left as it was."""
        with self._statement("park") as db:
            db.execute(q.PARK, at=at, error=error, id=row_id)

    def prune_delivered(
        self, destinations: Sequence[Destination], delivered_before: datetime, limit: int
    ) -> int:
        if not destinations or limit < 1:
            return 0
        with self._statement("prune_delivered") as db:
            return db.execute(
                q.PRUNE_DELIVERED,
                before=delivered_before,
                destinations=[Destination(d) for d in destinations],
                limit=limit,
            )

    def parked_rows(self, limit: int) -> list[ParkedRow]:
        if limit < 1:
            return []
        with self._reading("parked_rows") as db:
            return [_parked(row) for row in db.all(q.PARKED, limit=limit)]

    def requeue_parked(self, row_ids: Sequence[int]) -> list[ParkedRow]:
        return self._change_parked("requeue_parked", q.REQUEUE, row_ids)

    def drop_parked(self, row_ids: Sequence[int]) -> list[ParkedRow]:
        return self._change_parked("drop_parked", q.DROP_PARKED, row_ids)

    def _change_parked(self, operation: str, change: Q, row_ids: Sequence[int]) -> list[ParkedRow]:
        """Apply ``change`` to those of ``row_ids`` that are parked; them, as they were."""
        changed: list[ParkedRow] = []
        with self._transaction(operation) as db:
            for chunk in chunks(sorted(set(row_ids)), MAX_IDS_PER_STATEMENT):
                rows = [_parked(row) for row in db.all(q.PARKED_BY_ID, ids=list(chunk))]
                if rows:
                    db.execute(change, ids=[parked.row.id for parked in rows])
                changed += rows
        return changed

    def outbox_stats(self, destination: Destination) -> OutboxStats:
        with self._reading("outbox_stats") as db:
            row = db.one(q.OUTBOX_STATS, destination=Destination(destination))
        if row is None:
            raise StoreUnavailable("outbox_stats returned no row")
        return OutboxStats(
            pending=int(row["pending"]),
            parked=int(row["parked"]),
            oldest_pending_at=as_optional_datetime(row["oldest"]),
        )


def _parked(row: Row) -> ParkedRow:
    parked_at = as_optional_datetime(row["parked_at"])
    assert parked_at is not None, "only parked rows are read as ParkedRow"
    return ParkedRow(
        row=outbox_row_from_row(row), parked_at=parked_at, last_error=row["last_error"]
    )


def insert_events(db: Session, events: Iterable[OutboxEvent]) -> None:
    db.many(q.OUTBOX_INSERT, [event_values(event) for event in events])
