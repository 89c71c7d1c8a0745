"""The verifiable log's statements (``Q``, ``$name``), shared by both dialects.

A leaf is written pending (``leaf_index`` NULL) by the change it records,
in that change's transaction; integration gives it its index once, under
the tree row's lock (``{for_update}`` on PostgreSQL; SQLite's write lock).
"""

from __future__ import annotations

from vault.adapters.stores.sql import Q

LEAF_INSERT = Q(
    "INSERT INTO ledger_leaves (document_id, kind, leaf, leaf_hash, created_at)"
    " VALUES ($document_id, $kind, $leaf, $leaf_hash, $created_at)"
)
# Oldest first, by the partial index: the order the changes committed in
# (near enough: PostgreSQL hands out seq before commit, so a leaf may commit
# after a later one was integrated; it simply goes in the next batch).
PENDING = Q(
    "SELECT seq, leaf FROM ledger_leaves WHERE leaf_index IS NULL ORDER BY seq LIMIT $limit"
)
PENDING_COUNT = Q("SELECT count(*) AS n FROM ledger_leaves WHERE leaf_index IS NULL")
ASSIGN_INDEX = Q(
    "UPDATE ledger_leaves SET leaf_index = $leaf_index WHERE seq = $seq AND leaf_index IS NULL"
)
LEAVES_BY_INDEX = Q(
    "SELECT leaf FROM ledger_leaves WHERE leaf_index >= $start AND leaf_index < $end"
    " ORDER BY leaf_index"
)
REGISTERED_LEAF = Q(
    "SELECT leaf, leaf_hash, leaf_index FROM ledger_leaves"
    " WHERE document_id = $document_id AND kind = 'registered' ORDER BY seq LIMIT 1"
)

TREE = Q("SELECT log_id, size, edge FROM ledger_tree WHERE id = 1")
# Every integration holds this row until it commits: one tree, whichever
# process integrates, with no gap and no fork.
TREE_FOR_UPDATE = Q("SELECT log_id, size, edge FROM ledger_tree WHERE id = 1{for_update}")
TREE_OPEN = Q(
    "INSERT INTO ledger_tree (id, log_id, size, edge, updated_at)"
    " VALUES (1, $log_id, 0, $edge, $at) ON CONFLICT (id) DO NOTHING"
)
TREE_UPDATE = Q(
    "UPDATE ledger_tree SET size = $size, edge = $edge, updated_at = $at"
    " WHERE id = 1 AND size = $before"
)

TILE = Q("SELECT hashes FROM ledger_tiles WHERE level = $level AND idx = $idx")
TILE_PUT = Q(
    "INSERT INTO ledger_tiles (level, idx, hashes) VALUES ($level, $idx, $hashes)"
    " ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes"
)

_CHECKPOINT = "SELECT size, root_hash, note, signed_at FROM ledger_checkpoints"
CHECKPOINT_LATEST = Q(f"{_CHECKPOINT} ORDER BY size DESC LIMIT 1")
CHECKPOINT_AT = Q(f"{_CHECKPOINT} WHERE size = $size")
CHECKPOINT_INSERT = Q(
    "INSERT INTO ledger_checkpoints (size, root_hash, note, signed_at)"
    " VALUES ($size, $root_hash, $note, $signed_at) ON CONFLICT (size) DO NOTHING"
)

# The hash chain of the release before the log, in its order, with what a
# leaf needs of each entry's document.
LEGACY_ENTRIES = Q(
    "SELECT e.seq AS seq, e.document_id AS document_id, e.sha256_hash AS sha256_hash,"
    " e.registered_at AS registered_at, d.entity_type AS entity_type,"
    " d.entity_id AS entity_id, d.size_bytes AS size_bytes"
    " FROM ledger_entries e JOIN documents d ON d.id = e.document_id"
    " WHERE e.seq > $after ORDER BY e.seq LIMIT $limit"
)
