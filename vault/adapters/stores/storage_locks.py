"""The queue of objects whose lock must follow the records, in the SQL store.

Every change that alters what an object's lock must be queues its document
in the same transaction (``enqueue_*``): an upload under a policy or into a
held entity, a policy version that lengthens documents, a hold created,
changed or released. The retention keeper reads what is due with what the
lock must now be (``storage_lock_due``), applies it to the object store, and
records what it applied (``storage_lock_applied``); the queue row goes only
if nothing queued the document again meanwhile (its ``token``, new at each
queueing, is still the one read), so a change during an application is applied after it.
"""

from __future__ import annotations

from datetime import datetime

from vault.adapters.stores.holds import SqlHolds
from vault.adapters.stores.rows import as_datetime, as_optional_datetime, as_uuid
from vault.adapters.stores.sql import Q
from vault.domain.locks import LockMode, LockTask, ObjectLock, Retention

DUE = Q(
    "SELECT q.document_id, q.queued_at, q.token, d.storage_key, d.storage_version_id, d.entity_id,"
    " r.mode, r.retain_until,"
    " EXISTS (SELECT 1 FROM legal_hold_items i JOIN legal_holds h ON h.hold_id = i.hold_id"
    "   WHERE h.status = 'active' AND i.removed_at IS NULL"
    "   AND ((i.kind = 'document' AND i.target_id = d.id)"
    "        OR (i.kind = 'entity' AND i.target_id = d.entity_id))) AS held"
    " FROM storage_lock_queue q JOIN documents d ON d.id = q.document_id"
    " LEFT JOIN document_retention r ON r.document_id = q.document_id"
    " ORDER BY q.queued_at, q.document_id LIMIT $limit"
)
APPLIED = Q(
    "INSERT INTO storage_locks (document_id, mode, retain_until, legal_hold, applied_at)"
    " VALUES ($id, $mode, $until, $hold, $at) ON CONFLICT (document_id) DO UPDATE SET"
    " mode = excluded.mode, retain_until = excluded.retain_until,"
    " legal_hold = excluded.legal_hold, applied_at = excluded.applied_at"
)
DEQUEUE = Q("DELETE FROM storage_lock_queue WHERE document_id = $id AND token = $token")
BACKLOG = Q("SELECT COUNT(*) AS n, MIN(queued_at) AS oldest FROM storage_lock_queue")


class SqlStorageLocks(SqlHolds):
    """The storage lock queue of every SQL ``MetadataStore``."""

    def storage_lock_due(self, limit: int) -> list[LockTask]:
        with self._reading("storage_lock_due") as db:
            rows = db.all(DUE, limit=limit)
        tasks = []
        for row in rows:
            until = as_optional_datetime(row["retain_until"])
            retention = None if until is None else Retention(LockMode(row["mode"]), until)
            version = row["storage_version_id"]
            tasks.append(LockTask(
                document_id=as_uuid(row["document_id"]), storage_key=str(row["storage_key"]),
                version_id=None if version is None else str(version),
                queued_at=as_datetime(row["queued_at"]), token=as_uuid(row["token"]),
                retention=retention,
                legal_hold=bool(row["held"]),
            ))
        return tasks

    def storage_lock_applied(self, task: LockTask, applied: ObjectLock, at: datetime) -> bool:
        """Record what the object now holds; True when the queue row went (nothing
        queued the document again meanwhile)."""
        with self._transaction("storage_lock_applied") as db:
            db.execute(APPLIED, id=task.document_id,
                       mode=None if applied.mode is None else applied.mode.value,
                       until=applied.retain_until, hold=applied.legal_hold, at=at)
            return db.execute(DEQUEUE, id=task.document_id, token=task.token) == 1

    def storage_lock_backlog(self) -> tuple[int, datetime | None]:
        """Documents queued, and the oldest queued time."""
        with self._reading("storage_lock_backlog") as db:
            row = db.one(BACKLOG)
        if row is None:
            return 0, None
        return int(row["n"]), as_optional_datetime(row["oldest"])

