"""The ledger actor: integrates on nudges, signs on its timer or when asked, never signs a
fork, and two services on one PostgreSQL database grow one tree."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.deps import Backends
from actors.system import Sizing, Vault, run_vault
from tests.actors.helpers import (
    archive,
    execute_sql,
    publish,
    store_document,
    verify,
)
from tests.pg import PgDatabase
from tests.polling import eventually
from tests.support import pdf_bytes, test_settings
from vault.config import Settings
from vault.domain.checkpoint import open_checkpoint
from vault.domain.log import TileSet, tiles_for
from vault.domain.merkle import consistency_nodes, consistency_proof, verify_consistency
from vault.domain.models import DocumentStatus
from vault.wiring import open_adapters
from vault_http.serve import build_backends


async def test_a_nudge_integrates_without_signing(vault: Vault) -> None:
    """An upload's commit nudges the ledger: its leaf gets an index; no checkpoint yet."""
    before = await vault.backends.in_db(vault.backends.store.latest_checkpoint)
    await store_document(vault, pdf_bytes(100))
    store = vault.backends.store

    await eventually(
        lambda: store.ledger_head().size == 1, "the leaf to be integrated", in_thread=True
    )
    assert await vault.backends.in_db(store.pending_leaves) == 0
    assert await vault.backends.in_db(store.latest_checkpoint) == before is None


async def test_publish_signs_what_the_tree_holds(vault: Vault) -> None:
    """Publish integrates every pending leaf and answers a checkpoint the log's key signed."""
    docs = [await store_document(vault, pdf_bytes(100)) for _ in range(3)]
    await archive(vault, docs[0].id)

    state = await publish(vault)

    assert state.tree_size == 4
    assert state.checkpoint is not None and state.checkpoint.size == 4
    body = open_checkpoint(state.checkpoint.note, vault.log.verifier)
    assert (body.origin, body.size, body.root_hash) == (
        vault.log.origin, 4, state.checkpoint.root_hash
    )
    head = await vault.backends.in_db(vault.backends.store.ledger_head)
    assert head.tree.root() == body.root_hash
    assert vault.log.origin == f"document-vault.local/{head.log_id}"
    health = vault.ledger.health.snapshot()
    assert (health["tree_size"], health["pending"], health["checkpoint_size"]) == (4, 0, 4)
    assert health["last_checkpoint_at"] is not None
    assert (await publish(vault)).checkpoint == state.checkpoint  # no growth, no new checkpoint


@contextlib.asynccontextmanager
async def running_vault(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Vault]:
    backends, _ = await trio.to_thread.run_sync(build_backends, settings)
    running: Vault = await nursery.start(run_vault, backends, Sizing())
    try:
        yield running
    finally:
        await running.stop(5)
        await trio.to_thread.run_sync(backends.store.close)


async def test_the_timer_signs_within_the_interval(tmp_path: Path, nursery: trio.Nursery) -> None:
    """With no one asking, a change is under a signed checkpoint after one interval."""
    settings = test_settings(tmp_path / "data", ledger_checkpoint_interval_seconds=0.05)
    async with running_vault(settings, nursery) as vault:
        doc = await store_document(vault, pdf_bytes(100))
        store = vault.backends.store

        checkpoint = await eventually(
            lambda: store.latest_checkpoint(), "a checkpoint from the timer", in_thread=True
        )
        leaf = await vault.backends.in_db(store.registered_leaf, doc.id)
        assert leaf is not None and leaf.leaf_index is not None
        assert leaf.leaf_index < checkpoint.size


async def test_a_configured_origin_names_the_log(tmp_path: Path, nursery: trio.Nursery) -> None:
    settings = test_settings(tmp_path / "data", ledger_origin="vault.example.com/prod")
    async with running_vault(settings, nursery) as vault:
        await store_document(vault, pdf_bytes(100))
        state = await publish(vault)
        assert state.checkpoint is not None
        assert state.checkpoint.note.startswith("vault.example.com/prod\n1\n")
        assert vault.log.verifier.format().startswith("vault.example.com/prod+")


async def test_the_key_file_survives_a_restart(tmp_path: Path, nursery: trio.Nursery) -> None:
    """On the embedded default the signing key is made once, mode 0600, and reused."""
    settings = test_settings(tmp_path / "data")
    keys = []
    for _ in range(2):
        async with running_vault(settings, nursery) as vault:
            keys.append(vault.log.verifier.format())
    assert keys[0] == keys[1]
    key_file = tmp_path / "data" / "keys" / "ledger-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_stopping_signs_what_is_left(vault: Vault) -> None:
    await store_document(vault, pdf_bytes(100))

    await vault.stop(5)

    checkpoint = await vault.backends.in_db(vault.backends.store.latest_checkpoint)
    assert checkpoint is not None and checkpoint.size == 1


async def test_a_forked_tree_is_never_signed(vault: Vault) -> None:
    """A tile rewritten under the log: the next checkpoint is refused, and health says so."""
    for _ in range(3):
        await store_document(vault, pdf_bytes(100))
    signed = (await publish(vault)).checkpoint
    assert signed is not None
    tiles = await vault.backends.in_db(vault.backends.store.ledger_tiles, [(0, 0)])
    forged = bytes([tiles[(0, 0)][0] ^ 1]) + tiles[(0, 0)][1:]
    await execute_sql(
        vault,
        ("DROP TRIGGER ledger_tiles_only_grow", ()),
        ("UPDATE ledger_tiles SET hashes = ? WHERE level = 0 AND idx = 0", (forged,)),
    )
    await store_document(vault, pdf_bytes(100))

    state = await publish(vault)

    assert state.checkpoint == signed
    assert state.tree_size == 4
    health = vault.ledger.health
    assert health.failed == 1
    assert health.last_error is not None and health.last_error["type"] == "ForkRefused"


async def test_a_verified_document_leaves_its_outcome_in_the_log(vault: Vault) -> None:
    doc = await store_document(vault, pdf_bytes(100))
    assert (await verify(vault, doc.id)).status is DocumentStatus.VERIFIED
    state = await publish(vault)
    leaves = await vault.backends.in_db(vault.backends.store.ledger_leaves, 0, state.tree_size)
    assert [leaf.split(b"\n")[1] for leaf in leaves] == [b"kind registered", b"kind verified"]


# ------------------------------------------------- two services, one database


@attrs.frozen
class _Service:
    vault: Vault
    backends: Backends


@pytest.fixture
async def two_services(
    tmp_path: Path, pg_database: PgDatabase, nursery: trio.Nursery
) -> AsyncIterator[list[_Service]]:
    pg_database.truncate_all(keep=("schema_version",))
    # Replicas share the signing key (LEDGER_SIGNING_KEY), as in production.
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    services = []
    for name in ("a", "b"):
        settings = test_settings(
            tmp_path / name, database_url=pg_database.url, ledger_signing_key=pem,
            ledger_checkpoint_interval_seconds=0.02,
        )
        adapters = await trio.to_thread.run_sync(open_adapters, settings)
        backends = Backends(
            settings=settings, store=adapters.store, blobs=adapters.blobs, sinks=adapters.sinks,
            ledger_key=adapters.ledger_key,
        )
        running: Vault = await nursery.start(run_vault, backends, Sizing())
        services.append(_Service(running, backends))
    yield services
    for service in services:
        await service.vault.stop(5)
        await trio.to_thread.run_sync(service.backends.store.close)


async def test_two_services_grow_one_tree(two_services: list[_Service]) -> None:
    """Racing uploads and signing from two services: one tree, every checkpoint consistent."""
    first, second = two_services
    # One log id, kept in the database, and one key: one verifier key string.
    assert first.vault.log.verifier.format() == second.vault.log.verifier.format()

    async def upload_many(service: _Service) -> None:
        for _ in range(15):
            await store_document(service.vault, pdf_bytes(100))
            await publish(service.vault)

    async with trio.open_nursery() as racing:
        racing.start_soon(upload_many, first)
        racing.start_soon(upload_many, second)
    await publish(first.vault)
    await publish(second.vault)

    store = first.backends.store
    head = await first.backends.in_db(store.ledger_head)
    assert head.size == 30
    assert await first.backends.in_db(store.pending_leaves) == 0
    latest = await first.backends.in_db(store.latest_checkpoint)
    assert latest is not None and latest.size == 30

    checkpoints = [
        c for size in range(1, 31)
        if (c := await first.backends.in_db(store.checkpoint_at, size)) is not None
    ]
    assert len(checkpoints) >= 2
    for checkpoint in checkpoints:
        open_checkpoint(checkpoint.note, second.vault.log.verifier)
    for older, newer in itertools.pairwise(checkpoints):
        nodes = consistency_nodes(older.size, newer.size)
        tiles = TileSet(await first.backends.in_db(store.ledger_tiles, tiles_for(nodes)))
        proof = consistency_proof(older.size, newer.size, tiles.get_node)
        verify_consistency(older.size, newer.size, proof, older.root_hash, newer.root_hash)
