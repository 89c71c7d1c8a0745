"""The ledger benchmark's measurements (``ops.bench.ledger`` judges and prints them).

In this process, on a store: the integration rate and the receipts at
scale. Against spawned servers: the upload comparison (``uploads``).

Nothing here goes through HTTP. Leaves are written pending straight into
the store with its own transaction helper (``insert_leaves`` inside
``store._transaction``), as a change would, in chunks of ``FILL_CHUNK``;
then ``integrate_leaves`` gives them their indexes a batch at a time.
The leaves are ``registered`` leaves of made-up documents (no ``documents``
rows: the log's tables do not refer to them); document ``i`` has the id
``UUID(int=base + i)``, so a random document can be picked without keeping
a million ids.

Receipts and consistency proofs are built by the service's own blocking
functions, ``actors.log_reads._receipt`` and ``_consistency``, under one
checkpoint signed over the whole tree with a fresh Ed25519 key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.log_reads import Receipt, _consistency, _receipt
from ops.bench.backends import create_database, mask_password
from ops.bench.console import BenchError, progress
from ops.bench.load import API, Bench
from ops.bench.plan import SMALL_SIZE
from ops.bench.records import (
    IntegrationRate,
    Latency,
    ProofSizes,
    Spread,
    Stats,
    TreeBench,
    UploadComparison,
    UploadSide,
)
from ops.bench.server import SpawnedServer, imported_from, source_env, wait_healthy
from ops.bench.stats import percentile
from ops.bench.units import format_size
from vault.adapters.stores.ledger import insert_leaves
from vault.adapters.stores.postgres import PostgresMetadataStore
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.log import PendingLeaf, SignedCheckpoint, TileSet, tiles_for
from vault.domain.merkle import ProofError, range_nodes, root_at, verify_consistency
from vault.domain.models import EntityType
from vault.domain.note import Signer, Verifier
from vault.offline import CheckFailed, verify_receipt

FILL_CHUNK = 50_000
"""Pending leaves written per transaction."""
ORIGIN = "bench.document-vault.local/ledger"
PROGRESS_EVERY_S = 15.0
INTEGRATION_BATCH = 256
CHECKED = 20
"""Receipts (``vault.offline.verify_receipt``) and consistency proofs verified, untimed."""
UPLOAD_CLIENTS = 32

Store = SQLiteMetadataStore | PostgresMetadataStore


class Leaves:
    """The made-up documents of one run: document ``i``'s id, leaf, and the pending form."""

    def __init__(self) -> None:
        self.base = secrets.randbits(127)
        self.entity = uuid.uuid4()

    def document_id(self, i: int) -> uuid.UUID:
        return uuid.UUID(int=self.base + i)

    def pending(self, i: int, at: datetime) -> PendingLeaf:
        leaf = Leaf(
            kind=LeafKind.REGISTERED,
            document_id=self.document_id(i),
            entity_type=EntityType.ISSUER,
            entity_id=self.entity,
            sha256=hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
            size=100_000 + i,
            time=at,
        )
        return PendingLeaf.of(leaf, at)


def fill_pending(store: Store, leaves: Leaves, start: int, count: int) -> float:
    """Write documents ``start`` to ``start + count - 1`` pending; the seconds it took."""
    at = datetime.now(UTC)
    started = time.perf_counter()
    last = started
    for chunk in range(start, start + count, FILL_CHUNK):
        end = min(chunk + FILL_CHUNK, start + count)
        with store._transaction("bench") as db:
            insert_leaves(db, (leaves.pending(i, at) for i in range(chunk, end)))
        if time.perf_counter() - last > PROGRESS_EVERY_S:
            last = time.perf_counter()
            progress(f"  {end - start:,}/{count:,} leaves written pending")
    return time.perf_counter() - started


def integrate_all(store: Store, batch: int) -> tuple[int, int, float]:
    """``integrate_leaves(batch)`` until nothing is pending: (leaves, batches, seconds)."""
    at = datetime.now(UTC)
    added = batches = 0
    started = time.perf_counter()
    last = started
    while True:
        step = store.integrate_leaves(batch, at)
        if step.added == 0:
            break
        added += step.added
        batches += 1
        if time.perf_counter() - last > PROGRESS_EVERY_S:
            last = time.perf_counter()
            progress(f"  {added:,} leaves integrated, tree size {step.after:,}")
    return added, batches, time.perf_counter() - started


def integration_rate(store: Store, name: str, count: int, batch: int) -> IntegrationRate:
    """Fill ``count`` pending leaves, then time integrating them all ``batch`` at a time."""
    progress(f"{name}: writing {count:,} pending leaves")
    fill_s = fill_pending(store, Leaves(), 0, count)
    progress(f"{name}: integrating them, {batch} at a time")
    added, batches, seconds = integrate_all(store, batch)
    if added != count:
        raise BenchError(f"{name}: integrated {added} leaves, expected {count}")
    return IntegrationRate(
        store=name, leaves=added, batch=batch, batches=batches, fill_s=fill_s, integrate_s=seconds
    )


def sign_checkpoint(store: Store) -> tuple[SignedCheckpoint, Verifier]:
    """Sign the tree as it stands with a fresh key, store the checkpoint; and the key's verifier."""
    tree = store.ledger_head().tree
    root = tree.root()
    signer = Signer.from_key(ORIGIN, Ed25519PrivateKey.generate())
    note = signed_checkpoint(Checkpoint(ORIGIN, tree.size, root), signer)
    checkpoint = SignedCheckpoint(tree.size, root, note, datetime.now(UTC))
    store.add_checkpoint(checkpoint)
    return checkpoint, signer.verifier()


def check_consistency(
    store: Store, size1: int, top: SignedCheckpoint, hashes: Sequence[bytes]
) -> None:
    """``BenchError`` unless the proof takes the tree of size1 (its root from the tiles) to top."""
    tiles = TileSet(store.ledger_tiles(tiles_for(range_nodes(0, size1))))
    try:
        root1 = root_at(size1, tiles.get_node)
        verify_consistency(size1, top.size, hashes, root1, top.root_hash)
    except (ProofError, LookupError) as exc:
        raise BenchError(f"consistency proof {size1} -> {top.size} does not verify: {exc}") from exc


def receipt_json(receipt: Receipt) -> str:
    """The receipt route's JSON fields, as ``json.dumps`` writes them."""
    return json.dumps(
        {
            "document_id": str(receipt.document_id),
            "leaf": receipt.leaf.decode("utf-8"),
            "leaf_index": receipt.leaf_index,
            "tree_size": receipt.tree_size,
            "inclusion_proof": [
                base64.b64encode(h).decode("ascii") for h in receipt.inclusion_proof
            ],
            "checkpoint": receipt.checkpoint,
            "tlog_proof": receipt.tlog_proof(),
        }
    )


def latency(samples: list[float]) -> Latency:
    return Latency(
        samples=len(samples),
        p50_s=percentile(samples, 50),
        p99_s=percentile(samples, 99),
        max_s=max(samples, default=None),
    )


def spread(values: list[int]) -> Spread:
    if not values:
        return Spread(0, 0.0, 0)
    return Spread(low=min(values), median=statistics.median(values), high=max(values))


def _picks(rng: random.Random, upper: int, count: int) -> Iterator[int]:
    return (rng.randrange(upper) for _ in range(count))


def tree_bench(
    store: Store, leaves_total: int, batch: int, receipts: int, consistency: int
) -> TreeBench:
    """Build a tree of ``leaves_total`` leaves, sign it, then time receipts and proofs."""
    leaves = Leaves()
    progress(f"tree: writing {leaves_total:,} pending leaves ({FILL_CHUNK:,} a transaction)")
    insert_s = fill_pending(store, leaves, 0, leaves_total)
    progress(f"tree: integrating them, {batch} at a time")
    added, _, integrate_s = integrate_all(store, batch)
    if added != leaves_total:
        raise BenchError(f"tree: integrated {added} leaves, expected {leaves_total}")
    checkpoint, verifier = sign_checkpoint(store)
    size = checkpoint.size

    rng = random.Random()
    progress(f"tree: {receipts} receipts of random documents")
    receipt_s: list[float] = []
    json_s: list[float] = []
    hashes: list[int] = []
    tlog_bytes: list[int] = []
    json_bytes: list[int] = []
    for i in _picks(rng, leaves_total, receipts):
        document_id = leaves.document_id(i)
        started = time.perf_counter()
        found = _receipt(store, document_id, None, 1)
        built = time.perf_counter()
        if not isinstance(found, Receipt):
            raise BenchError(f"receipt of document {i} is pending under a checkpoint of {size}")
        text = receipt_json(found)
        receipt_s.append(built - started)
        json_s.append(time.perf_counter() - started)
        hashes.append(len(found.inclusion_proof))
        tlog_bytes.append(len(found.tlog_proof().encode("utf-8")))
        json_bytes.append(len(text.encode("utf-8")))
        if len(json_bytes) <= CHECKED:
            try:
                verify_receipt(text, verifier)
            except CheckFailed as exc:
                raise BenchError(f"receipt of leaf {found.leaf_index} fails: {exc}") from exc

    progress(f"tree: {consistency} consistency proofs from random sizes to {size:,}")
    consistency_s: list[float] = []
    consistency_hashes: list[int] = []
    for m in _picks(rng, size - 1, consistency) if size > 1 else iter(()):
        started = time.perf_counter()
        proof = _consistency(store, m + 1, size)
        consistency_s.append(time.perf_counter() - started)
        consistency_hashes.append(len(proof.hashes))
        if len(consistency_hashes) <= CHECKED:
            check_consistency(store, m + 1, checkpoint, proof.hashes)

    return TreeBench(
        leaves=leaves_total,
        batch=batch,
        insert_s=insert_s,
        integrate_s=integrate_s,
        receipt=latency(receipt_s),
        receipt_with_json=latency(json_s),
        consistency=latency(consistency_s),
        sizes=ProofSizes(
            inclusion_hashes=spread(hashes),
            inclusion_bytes=spread([32 * n for n in hashes]),
            tlog_proof_bytes=spread(tlog_bytes),
            receipt_json_bytes=spread(json_bytes),
            consistency_hashes=spread(consistency_hashes),
            checkpoint_bytes=len(checkpoint.note.encode("utf-8")),
        ),
    )


# --------------------------------------------------------------------------- runs


def integration_sqlite(folder: Path, count: int) -> IntegrationRate:

    store = SQLiteMetadataStore(folder / "integration.sqlite3")
    try:
        store.migrate()
        return integration_rate(store, "sqlite", count, INTEGRATION_BATCH)
    finally:
        store.close()


def integration_postgres(admin_url: str, count: int) -> IntegrationRate:

    url, drop = create_database(admin_url, uuid.uuid4().hex[:12])
    progress(f"postgresql: scratch database {mask_password(url)}")
    try:
        store = PostgresMetadataStore(url, max_size=2)
        try:
            store.migrate()
            return integration_rate(store, "postgresql", count, INTEGRATION_BATCH)
        finally:
            store.close()
    finally:
        drop()


def tree(folder: Path, args: argparse.Namespace) -> TreeBench:
    """The receipts at scale, on a SQLite file in folder."""

    store = SQLiteMetadataStore(folder / "tree.sqlite3")
    try:
        store.migrate()
        return tree_bench(
            store, args.ledger_leaves, args.build_batch, args.receipts, args.consistency_proofs
        )
    finally:
        store.close()


def _upload_round(url: str, pid: int | None, requests: int, payload: bytes) -> Stats:
    bench = Bench(
        url, pid, repeat=None, small_requests=(1, requests), read_requests=1, timeout=600.0
    )
    entity = str(uuid.uuid4())

    async def request(client: httpx.AsyncClient, _: int) -> httpx.Response:
        body = bench.body(entity, payload)
        return await client.post(
            f"{url}{API}/upload", content=b"".join(body.chunks()), headers=body.headers
        )

    return bench.concurrent(UPLOAD_CLIENTS, requests, request, 201, "ledger uploads")


def uploads(folder: Path, args: argparse.Namespace) -> UploadComparison:
    """Spawn the current server (and the baseline's), warm both, alternate rounds."""
    payload = os.urandom(SMALL_SIZE)
    sides: list[tuple[str, Path | None]] = [("current", None)]
    if args.baseline_src is not None:
        sides.append(("baseline", args.baseline_src))
    servers: dict[str, SpawnedServer] = {}
    imported: dict[str, str] = {}
    rounds: dict[str, list[Stats]] = {label: [] for label, _ in sides}
    try:
        for label, src in sides:
            sub = folder / f"server-{label}"
            sub.mkdir()
            env = {} if src is None else source_env(src, sub)
            imported[label] = imported_from(env, sub)
            server = servers[label] = SpawnedServer(sub, src=src)
            server.start()
            progress(f"{label} server pid {server.pid} on {server.url} ({imported[label]})")
            wait_healthy(server.url, server)
            Bench(
                server.url,
                server.pid,
                repeat=None,
                small_requests=(1, 1),
                read_requests=1,
                timeout=60.0,
            ).warm_up()
        for n in range(args.rounds):
            for label, _ in sides:
                server = servers[label]
                progress(
                    f"uploads round {n + 1}/{args.rounds}: {label}, "
                    f"{args.upload_requests} x {format_size(SMALL_SIZE)}"
                )
                stats = _upload_round(server.url, server.pid, args.upload_requests, payload)
                rounds[label].append(stats)
    finally:
        for label, server in servers.items():
            code = server.stop()
            progress(f"{label} server stopped, exit code {code}")
            if code != 0:
                print(f"bench: {label} server log:\n{server.log_tail()}", file=sys.stderr)
    made = {
        label: UploadSide(
            label=label,
            source=str(src.resolve()) if src else str(Path.cwd()),
            imported=imported[label],
            rounds=tuple(rounds[label]),
        )
        for label, src in sides
    }
    return UploadComparison(
        clients=UPLOAD_CLIENTS,
        size_bytes=SMALL_SIZE,
        requests=args.upload_requests,
        current=made["current"],
        baseline=made.get("baseline"),
    )
