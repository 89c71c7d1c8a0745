"""Every statement the SQL metadata stores share, written once (``Q``, ``$name``).

A ``{for_update}`` or ``{skip_locked}`` is the dialect's: a row lock on
PostgreSQL, nothing on SQLite, whose write transaction already holds the
only write lock. The comments beside a statement say what it guards.
"""

from __future__ import annotations

from functools import cache

from vault.adapters.stores.rows import DOCUMENT_COLUMNS, LEDGER_COLUMNS, OUTBOX_COLUMNS
from vault.adapters.stores.sql import Q

_DOCUMENTS = ", ".join(DOCUMENT_COLUMNS)

DOCUMENT = Q(f"SELECT {_DOCUMENTS} FROM documents WHERE id = $id")
DOCUMENT_FOR_UPDATE = Q(f"SELECT {_DOCUMENTS} FROM documents WHERE id = $id{{for_update}}")
DOCUMENT_INSERT = Q(
    f"INSERT INTO documents ({_DOCUMENTS})"
    f" VALUES ({', '.join('$' + column for column in DOCUMENT_COLUMNS)})"
)
PRESENT = Q("SELECT id FROM documents WHERE id IN ($*ids)")
# Every live document of the entity with this content (one, or a few left by
# the service this one replaces); the caller takes the oldest. No ORDER BY:
# SQLite would then walk the entity's (entity_id, created_at) index, every
# document of the entity, instead of looking the pair up (1.4 ms a call at
# 1,000 documents an entity, growing with it).
LIVE_TWINS = Q(
    "SELECT id, created_at FROM documents"
    " WHERE entity_id = $entity_id AND sha256_hash = $sha256_hash"
    " AND status NOT IN ('archived', 'disposed')"
)

# At most one live document per (entity, content). Against an uncommitted
# claim of the same pair the insert waits for that transaction, then either
# inserts (it rolled back) or does nothing and names no row.
CLAIM = Q(
    "INSERT INTO document_hash_claims (entity_id, sha256_hash, document_id)"
    " VALUES ($entity_id, $sha256_hash, $document_id)"
    " ON CONFLICT (entity_id, sha256_hash) DO NOTHING RETURNING document_id"
)
CLAIM_HOLDER = Q(
    "SELECT document_id FROM document_hash_claims"
    " WHERE entity_id = $entity_id AND sha256_hash = $sha256_hash"
)
CLAIM_RELEASE = Q("DELETE FROM document_hash_claims WHERE document_id = $document_id")
# "Live" below means neither archived nor disposed (a disposed document is a tombstone).

_LEDGER = ", ".join(LEDGER_COLUMNS)
# The hash chain of the release before the log, read to check the
# references of the documents it registered.
LEDGER_BY_HASH = Q(f"SELECT {_LEDGER} FROM ledger_entries WHERE entry_hash = $entry_hash")
LEDGER_BY_SEQ = Q(f"SELECT {_LEDGER} FROM ledger_entries WHERE seq = $seq")

VERIFICATION = Q(
    "UPDATE documents SET status = $status, verified_by = $verified_by,"
    " hash_verified_at = $at, updated_at = $at WHERE id = $id"
)
ARCHIVE = Q(
    "UPDATE documents SET status = 'archived', archived_by = $archived_by,"
    " archived_at = $at, updated_at = $at WHERE id = $id"
)
# Rows a manual archive changed meanwhile drop out of the locked subquery,
# so a batch may come back short: whether the cascade is finished is asked
# afterwards (LIVE_LEFT), not inferred from the batch's size.
ARCHIVE_BATCH = Q(
    "UPDATE documents SET status = 'archived', archived_by = NULL,"
    " archived_at = $at, updated_at = $at"
    " WHERE id IN (SELECT id FROM documents"
    "   WHERE entity_id = $entity_id AND status NOT IN ('archived', 'disposed')"
    "   ORDER BY created_at, id LIMIT $limit{for_update})"
    f" AND status NOT IN ('archived', 'disposed') RETURNING {_DOCUMENTS}"
)
LIVE_LEFT = Q(
    "SELECT 1 AS live FROM documents"
    " WHERE entity_id = $entity_id AND status NOT IN ('archived', 'disposed') LIMIT 1"
)
PROCESSED = Q("SELECT 1 AS seen FROM processed_events WHERE event_id = $event_id")
MARK_PROCESSED = Q(
    "INSERT INTO processed_events"
    " (id, created_at, updated_at, event_id, source, action, entity_id, entity_type)"
    " VALUES ($id, $at, $at, $event_id, $source, $action, $entity_id, $entity_type)"
    " ON CONFLICT (event_id) DO NOTHING"
)

OUTBOX_INSERT = Q(
    "INSERT INTO outbox (event_id, destination, body, attributes, group_id, created_at)"
    " VALUES ($event_id, $destination, $body, $attributes, $group_id, $created_at)"
)
# One statement: the rows it locks (skipping those another claim holds) are
# leased before the lock is released, so two publishers never get one row.
# A row waits while an earlier row of its group (a document's events, for
# one destination) is undelivered and not parked: being retried, leased by
# another publisher or simply ahead of it. So a later event never overtakes
# an earlier one, which FIFO queues and their consumers rely on.
# The subquery's "LIMIT 1 OFFSET 0" keeps PostgreSQL from turning it into an
# anti-join: on a table not yet analyzed (a burst into a new outbox) that
# join scanned every pending row once per candidate (1.7 s a claim at 60,000
# rows); kept as a per-row check it is an index probe (0.7 ms), and SQLite
# reads it the same way.
CLAIM_OUTBOX = Q(
    "WITH due AS ("
    " SELECT id FROM outbox"
    " WHERE delivered_at IS NULL AND parked_at IS NULL"
    " AND destination IN ($*destinations)"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= $now)"
    " AND (leased_until IS NULL OR leased_until <= $now)"
    " AND NOT EXISTS (SELECT 1 FROM outbox AS earlier"
    "   WHERE earlier.destination = outbox.destination"
    "   AND earlier.group_id = outbox.group_id AND earlier.id < outbox.id"
    "   AND earlier.delivered_at IS NULL AND earlier.parked_at IS NULL LIMIT 1 OFFSET 0)"
    " ORDER BY id LIMIT $limit{skip_locked})"
    " UPDATE outbox SET leased_until = $leased_until FROM due WHERE outbox.id = due.id"
    f" RETURNING {', '.join(f'outbox.{column}' for column in OUTBOX_COLUMNS)}"
)
MARK_DELIVERED = Q(
    "UPDATE outbox SET delivered_at = $at, leased_until = NULL WHERE id IN ($*ids)"
)
MARK_FAILED = Q(
    "UPDATE outbox SET attempts = attempts + 1, last_error = $error,"
    " next_attempt_at = $retry_at, leased_until = NULL WHERE id = $id"
)
PARK = Q(
    "UPDATE outbox SET parked_at = $at, last_error = $error, leased_until = NULL WHERE id = $id"
)
PRUNE_DELIVERED = Q(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
    " WHERE delivered_at IS NOT NULL AND delivered_at < $before"
    " AND destination IN ($*destinations) ORDER BY delivered_at LIMIT $limit)"
)
_PARKED = (
    f"SELECT {', '.join(OUTBOX_COLUMNS)}, parked_at, last_error FROM outbox"
    " WHERE parked_at IS NOT NULL"
)
PARKED = Q(f"{_PARKED} ORDER BY id LIMIT $limit")
PARKED_BY_ID = Q(f"{_PARKED} AND id IN ($*ids) ORDER BY id{{for_update}}")
REQUEUE = Q(
    "UPDATE outbox SET parked_at = NULL, attempts = 0, next_attempt_at = NULL,"
    " leased_until = NULL WHERE id IN ($*ids) AND parked_at IS NOT NULL"
)
DROP_PARKED = Q("DELETE FROM outbox WHERE id IN ($*ids) AND parked_at IS NOT NULL")
OUTBOX_STATS = Q(
    "SELECT pending.n AS pending, pending.oldest AS oldest, parked.n AS parked"
    " FROM (SELECT count(*) AS n, min(created_at) AS oldest FROM outbox"
    "       WHERE destination = $destination"
    "       AND delivered_at IS NULL AND parked_at IS NULL) AS pending,"
    "      (SELECT count(*) AS n FROM outbox"
    "       WHERE destination = $destination AND parked_at IS NOT NULL) AS parked"
)


@cache
def page_query(by_type: bool, include_archived: bool, after: bool) -> Q:
    """A listing page: newest first, strictly after the cursor's (created_at, id)."""
    clauses = ["entity_id = $entity_id"]
    if by_type:
        clauses.append("entity_type = $entity_type")
    if not include_archived:
        clauses.append("status NOT IN ('archived', 'disposed')")
    if after:
        clauses.append("(created_at, id) < ($after_created_at, $after_id)")
    return Q(
        f"SELECT {_DOCUMENTS} FROM documents WHERE {' AND '.join(clauses)}"
        " ORDER BY created_at DESC, id DESC LIMIT $limit"
    )
