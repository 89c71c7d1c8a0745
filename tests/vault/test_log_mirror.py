"""The log's static tlog-tiles mirror in S3: which paths it writes, and a bucket that a
client reads the log from alone.

``mirror_paths`` is checked against ``tiles_for_size``/``bundles_for_size``: for
every pair of sizes among the interesting ones, and over seeded random walks of
checkpoint sizes. The mirror runs on moto's server against a real SQLite store;
the reader sees only the bucket (``get_object``) and the log's verifier key.
moto applies a bucket's default Object Lock rule to objects written without
one, as S3 does; it does not refuse a retain-until date in the past (the
tests use a fixed clock).
"""

from __future__ import annotations

import contextlib
import random
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.mirror_reader import get_object, read_tiles_log
from tests.vault.blob_helpers import drop_bucket, new_bucket, s3_client
from vault.adapters.blobs.log_mirror import (
    CHECKPOINT_CACHE_CONTROL,
    CHECKPOINT_CONTENT_TYPE,
    DEFAULT_RETENTION_DAYS,
    TILE_CACHE_CONTROL,
    TILE_CONTENT_TYPE,
    MirrorRefused,
    MirrorResult,
    MirrorUnavailable,
    Retention,
    S3LogMirror,
)
from vault.adapters.stores.ledger import insert_leaves
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.errors import DependencyUnavailable
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.log import PendingLeaf, origin_for
from vault.domain.merkle import HASH_SIZE
from vault.domain.mirror import MirrorPath, mirror_paths
from vault.domain.models import EntityType
from vault.domain.note import Signer, Verifier
from vault.domain.tiles import (
    TILE_WIDTH,
    BundleId,
    TileId,
    bundles_for_size,
    encode_bundle,
    tiles_for_size,
)

BASE = datetime(2025, 10, 23, 12, 0, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
"""The mirror's clock, so retain-until dates are exact."""


def needed(size: int) -> set[MirrorPath]:
    """Every path a client of a checkpoint of ``size`` may fetch."""
    return {*tiles_for_size(size), *bundles_for_size(size)}


def full_paths(paths: set[MirrorPath]) -> set[MirrorPath]:
    return {path for path in paths if not path.is_partial}


# ------------------------------------------------------------ mirror_paths

EDGES = sorted(
    {0, 1, 2, 3, 7, 8, 9, 127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 700, 767, 768}
    | {65279, 65280, 65535, 65536, 65537, 65792, 66000}
)


class TestMirrorPaths:
    def test_examples(self) -> None:
        assert mirror_paths(0, 0) == []
        assert mirror_paths(0, 1) == [TileId(0, 0, 1), BundleId(0, 1)]
        assert mirror_paths(0, 257) == [
            TileId(0, 0), TileId(0, 1, 1), TileId(1, 0, 1), BundleId(0), BundleId(1, 1)
        ]
        # The level-1 partial tile 1/000.p/1 is the same path at 256 and 257.
        assert mirror_paths(256, 257) == [TileId(0, 1, 1), BundleId(1, 1)]
        assert mirror_paths(257, 257) == []
        assert [p.path for p in mirror_paths(65535, 65536)] == [
            "tile/0/255", "tile/1/000", "tile/2/000.p/1", "tile/entries/255"
        ]

    @pytest.mark.parametrize("size", EDGES)
    def test_from_nothing_every_path_of_the_size(self, size: int) -> None:
        paths = mirror_paths(0, size)
        assert len(paths) == len(set(paths))
        assert set(paths) == needed(size)

    def test_exactly_the_paths_the_previous_size_lacked(self) -> None:
        """For every pair of sizes: the new size's paths less the previous size's."""
        for size in EDGES:
            for previous in (p for p in EDGES if p <= size):
                paths = mirror_paths(previous, size)
                assert len(paths) == len(set(paths))
                assert set(paths) == needed(size) - needed(previous), (previous, size)

    def test_walks_cover_every_checkpoint_and_write_no_path_twice(self) -> None:
        """Mirroring 0 → s1 → s2 → … leaves, after each step, every path that step's
        checkpoint needs, and writes each path (full or partial) once in all."""
        rng = random.Random(20251023)
        for _ in range(150):
            size, written = 0, set[MirrorPath]()
            for _ in range(rng.randint(1, 12)):
                previous, size = size, _next_size(rng, size)
                step = set(mirror_paths(previous, size))
                assert not written & step, (previous, size)
                assert step <= needed(size)
                written |= step
                assert needed(size) <= written, (previous, size)
            assert full_paths(written) == full_paths(needed(size))

    def test_huge_trees_cost_only_their_new_paths(self) -> None:
        size = 2**40
        assert [p.path for p in mirror_paths(size, size + 1)] == [
            "tile/0/x004/x294/x967/296.p/1", "tile/entries/x004/x294/x967/296.p/1"
        ]

    @pytest.mark.parametrize(("previous", "size"), [(2, 1), (-1, 3), (0, -1)])
    def test_refuses_to_go_back(self, previous: int, size: int) -> None:
        with pytest.raises(ValueError, match="cannot mirror"):
            mirror_paths(previous, size)


def _next_size(rng: random.Random, size: int) -> int:
    """A step a log might take: a few leaves, up to or just past a tile edge, or none."""
    choice = rng.random()
    if choice < 0.1:
        return size
    if choice < 0.5:
        return size + rng.randint(1, 300)
    if choice < 0.8:
        edge = (size // TILE_WIDTH + rng.randint(1, 3)) * TILE_WIDTH
        return edge + rng.choice((-1, 0, 1))
    if choice < 0.9:
        edge = (size // TILE_WIDTH**2 + 1) * TILE_WIDTH**2
        return edge + rng.choice((-1, 0, 1))
    return size + rng.randint(1, 5000)


# ------------------------------------------------------------ a real log


class Log:
    """A log in a real SQLite store, grown to chosen sizes and signed at each."""

    def __init__(self, store: SQLiteMetadataStore) -> None:
        self.store = store
        origin = origin_for(None, store.ledger_head().log_id)
        self.signer = Signer.from_key(origin, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
        self.verifier: Verifier = self.signer.verifier()
        self.entity = uuid.uuid4()

    def grow_to(self, size: int) -> str:
        """Write and integrate leaves up to ``size``; the signed checkpoint of that size."""
        head = self.store.ledger_head().size
        leaves = [
            PendingLeaf.of(
                Leaf(LeafKind.REGISTERED, uuid.uuid4(), EntityType.ISSUER, self.entity,
                     f"{index:064x}", index + 1, BASE),
                BASE,
            )
            for index in range(head, size)
        ]
        if leaves:
            with self.store._transaction("test_leaves") as db:
                insert_leaves(db, leaves)
            assert self.store.integrate_leaves(len(leaves), BASE).after == size
        return self.note()

    def note(self) -> str:
        head = self.store.ledger_head()
        return self.sign(head.size, head.tree.root())

    def sign(self, size: int, root: bytes) -> str:
        return signed_checkpoint(Checkpoint(self.signer.name, size, root), self.signer)


def read_mirror(
    client: Any,
    bucket: str,
    verifier: Verifier,
    note: str | None = None,
    prefix: str = "ledger/",
    cache: dict[str, bytes] | None = None,
) -> Checkpoint:
    """What a tlog-tiles client does with the bucket alone: open the checkpoint (the
    bucket's, or an older ``note``), fetch every tile and bundle of its size, and check
    that the tiles give its root, each tile hash is its child tile's root, and each
    level-0 hash is the hash of its bundle's leaf.

    With a ``cache`` the paths fetched before are not fetched again, as a client keeps
    what is served ``immutable``."""
    cache = {} if cache is None else cache

    def fetch(path: str) -> bytes:
        if path not in cache:
            cache[path] = get_object(client, bucket, prefix + path)
        return cache[path]

    text = get_object(client, bucket, prefix + "checkpoint") if note is None else note.encode()
    checkpoint, bundles = read_tiles_log(text, fetch, verifier)
    for leaves in bundles:
        assert Leaf.parse(leaves[-1]).kind is LeafKind.REGISTERED
    return checkpoint


def keys(client: Any, bucket: str) -> set[str]:
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update(item["Key"] for item in page.get("Contents", ()))
    return found


Call = tuple[str, dict[str, Any]]


@contextlib.contextmanager
def recorded(client: Any) -> Iterator[list[Call]]:
    """Every S3 operation the client makes while inside, with its parameters (no body)."""
    seen: list[Call] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, {k: v for k, v in params.items() if k != "Body"}))

    client.meta.events.register("provide-client-params.s3.*", record)
    try:
        yield seen
    finally:
        client.meta.events.unregister("provide-client-params.s3.*", record)


@contextlib.contextmanager
def cut_after(client: Any, operation: str, calls: int) -> Iterator[None]:
    """While inside, ``operation`` works ``calls`` times, then fails as if S3 were gone."""
    left = {"calls": calls}

    def refuse(**_: Any) -> None:
        left["calls"] -= 1
        if left["calls"] < 0:
            raise EndpointConnectionError(endpoint_url="http://s3.test")

    event = f"before-call.s3.{operation}"
    client.meta.events.register(event, refuse)
    try:
        yield
    finally:
        client.meta.events.unregister(event, refuse)


@pytest.fixture
def client(aws_env: str) -> Iterator[Any]:
    s3 = s3_client(aws_env)
    try:
        yield s3
    finally:
        s3.close()


@pytest.fixture
def bucket(client: Any) -> Iterator[str]:
    name = new_bucket(client)
    try:
        yield name
    finally:
        empty_bucket(client, name)
        drop_bucket(client, name)


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every version, a thousand at a time (``drop_bucket`` goes one by one)."""
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if versions:
            client.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True})


def locked_bucket(client: Any, rule: dict[str, Any] | None) -> str:
    """A new bucket with Object Lock (and ``rule`` as its default retention, if any).

    Never dropped: its objects are locked. moto's server keeps it until the session ends.
    """
    name = f"vault-lock-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if rule is not None:
        config["Rule"] = {"DefaultRetention": rule}
    client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=config)
    return name


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    store = SQLiteMetadataStore(tmp_path / "vault.sqlite3")
    store.migrate()
    try:
        yield Log(store)
    finally:
        store.close()


def mirror_for(client: Any, bucket: str, **options: Any) -> S3LogMirror:
    return S3LogMirror(client, bucket, clock=lambda: NOW, **options)


class TestMirror:
    def test_a_growing_log_is_read_from_the_bucket_alone(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        """0 → 1 → 255 → 256 → 257 → 700 → 65536 → 66000: after each step the bucket
        serves that checkpoint whole (levels 0 to 2), and every earlier one still."""
        mirror = mirror_for(client, bucket)
        notes: list[str] = []
        cache: dict[str, bytes] = {}

        def stored_bytes(path: MirrorPath) -> int:
            if isinstance(path, TileId):
                return HASH_SIZE * path.width
            start = TILE_WIDTH * path.index
            return len(encode_bundle(log.store.ledger_leaves(start, start + path.width)))

        previous = 0
        for size in (1, 255, 256, 257, 700, 65536, 66000):
            note = log.grow_to(size)
            result = mirror.mirror(log.store, previous, size, note)
            paths = mirror_paths(previous, size)
            assert result.objects == len(paths) + 1
            assert result.bytes == sum(map(stored_bytes, paths)) + len(note.encode())
            assert get_object(client, bucket, "ledger/checkpoint") == note.encode()
            assert read_mirror(client, bucket, log.verifier, cache=cache).size == size
            notes.append(note)
            previous = size
        assert keys(client, bucket) == {"ledger/checkpoint"} | {
            "ledger/" + path.path for size in (1, 255, 256, 257, 700, 65536, 66000)
            for path in needed(size)
        }
        for note in notes:
            read_mirror(client, bucket, log.verifier, note, cache=cache)
        for note in notes[:5]:
            read_mirror(client, bucket, log.verifier, note)

    def test_objects_carry_their_types_and_caching(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        mirror_for(client, bucket).mirror(log.store, 0, 300, log.grow_to(300))
        for key in ("ledger/tile/0/000", "ledger/tile/0/001.p/44", "ledger/tile/1/000.p/1",
                    "ledger/tile/entries/000", "ledger/tile/entries/001.p/44"):
            head = client.head_object(Bucket=bucket, Key=key)
            assert (head["ContentType"], head["CacheControl"]) == (
                TILE_CONTENT_TYPE, TILE_CACHE_CONTROL
            ), key
            assert "ObjectLockMode" not in head
        head = client.head_object(Bucket=bucket, Key="ledger/checkpoint")
        assert (head["ContentType"], head["CacheControl"]) == (
            "text/plain; charset=utf-8", "no-cache"
        ) == (CHECKPOINT_CONTENT_TYPE, CHECKPOINT_CACHE_CONTROL)

    def test_the_checkpoint_is_written_last(self, client: Any, bucket: str, log: Log) -> None:
        note = log.grow_to(600)
        with recorded(client) as calls:
            mirror_for(client, bucket).mirror(log.store, 0, 600, note)
        puts = [params["Key"] for name, params in calls if name == "PutObject"]
        assert puts[-1] == "ledger/checkpoint"
        assert sorted(puts[:-1]) == sorted("ledger/" + p.path for p in needed(600))
        assert all(params["ChecksumAlgorithm"] == "SHA256" for name, params in calls
                   if name == "PutObject")

    def test_the_same_size_again_writes_only_the_checkpoint(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        mirror = mirror_for(client, bucket)
        note = log.grow_to(700)
        mirror.mirror(log.store, 0, 700, note)
        again = log.note()
        assert mirror.mirror(log.store, 700, 700, again) == MirrorResult(1, len(again.encode()))
        assert read_mirror(client, bucket, log.verifier).size == 700

    def test_an_empty_log_mirrors_its_checkpoint(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        note = log.note()
        assert mirror_for(client, bucket).mirror(log.store, 0, 0, note).objects == 1
        assert read_mirror(client, bucket, log.verifier).size == 0
        assert keys(client, bucket) == {"ledger/checkpoint"}

    def test_another_prefix(self, client: Any, bucket: str, log: Log) -> None:
        mirror_for(client, bucket, prefix="logs/vault/").mirror(log.store, 0, 5, log.grow_to(5))
        assert read_mirror(client, bucket, log.verifier, prefix="logs/vault/").size == 5
        assert all(key.startswith("logs/vault/") for key in keys(client, bucket))
        with pytest.raises(ValueError, match="prefix"):
            S3LogMirror(client, bucket, "ledger")

    def test_a_mirror_cut_part_way_completes_when_run_again(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        """A crash after some writes leaves the previous checkpoint served whole; the
        same call again writes the same bytes and the new checkpoint."""
        mirror = mirror_for(client, bucket)
        first = log.grow_to(300)
        mirror.mirror(log.store, 0, 300, first)
        note = log.grow_to(1100)
        with cut_after(client, "PutObject", 3), pytest.raises(MirrorUnavailable) as caught:
            mirror.mirror(log.store, 300, 1100, note)
        assert "\n" not in caught.value.detail
        assert get_object(client, bucket, "ledger/checkpoint") == first.encode()
        assert read_mirror(client, bucket, log.verifier).size == 300
        mirror.mirror(log.store, 300, 1100, note)
        assert read_mirror(client, bucket, log.verifier).size == 1100
        read_mirror(client, bucket, log.verifier, first)


class TestRefusals:
    def test_a_note_of_another_size(self, client: Any, bucket: str, log: Log) -> None:
        note = log.grow_to(10)
        with pytest.raises(MirrorRefused, match="size 10, not 9"):
            mirror_for(client, bucket).mirror(log.store, 0, 9, note)
        with pytest.raises(MirrorRefused, match="not a checkpoint"):
            mirror_for(client, bucket).mirror(log.store, 0, 10, "hello\n")
        assert keys(client, bucket) == set()

    def test_a_note_whose_root_is_not_the_tree(self, client: Any, bucket: str, log: Log) -> None:
        log.grow_to(300)
        with pytest.raises(MirrorRefused, match="root"):
            mirror_for(client, bucket).mirror(log.store, 0, 300, log.sign(300, b"\x01" * 32))
        assert keys(client, bucket) == set()

    def test_a_checkpoint_beyond_the_stored_tree(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        log.grow_to(300)
        with pytest.raises(MirrorRefused, match="does not hold"):
            mirror_for(client, bucket).mirror(log.store, 0, 301, log.sign(301, b"\x01" * 32))
        assert keys(client, bucket) == set()

    def test_sizes_that_go_back(self, client: Any, bucket: str, log: Log) -> None:
        with pytest.raises(ValueError, match="cannot mirror"):
            mirror_for(client, bucket).mirror(log.store, 20, 10, log.grow_to(10))

    def test_bad_arguments(self, client: Any) -> None:
        with pytest.raises(ValueError, match="bucket"):
            S3LogMirror(client, "")
        with pytest.raises(ValueError, match="retention_days"):
            S3LogMirror(client, "b", retention_days=0)


class TestUnavailable:
    def test_the_endpoint_down(self, aws_env: str, log: Log) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        down = s3_client(f"http://127.0.0.1:{port}", retries={"max_attempts": 1})
        try:
            with pytest.raises(MirrorUnavailable) as caught:
                S3LogMirror(down, "vault-mirror").mirror(log.store, 0, 3, log.grow_to(3))
        finally:
            down.close()
        assert isinstance(caught.value, DependencyUnavailable)
        assert caught.value.status == 503
        assert "vault-mirror" in caught.value.detail and "\n" not in caught.value.detail

    def test_a_failed_put_writes_no_checkpoint(self, client: Any, bucket: str, log: Log) -> None:
        with cut_after(client, "PutObject", 0), pytest.raises(MirrorUnavailable, match="tile/"):
            mirror_for(client, bucket).mirror(log.store, 0, 3, log.grow_to(3))
        assert keys(client, bucket) == set()

    def test_a_missing_bucket(self, client: Any, log: Log) -> None:
        with pytest.raises(MirrorUnavailable, match="NoSuchBucket"):
            mirror_for(client, f"absent-{uuid.uuid4().hex[:12]}").mirror(
                log.store, 0, 3, log.grow_to(3)
            )

    def test_an_unreadable_lock_configuration_writes_nothing(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        mirror = mirror_for(client, bucket)
        with cut_after(client, "GetObjectLockConfiguration", 0), pytest.raises(
            MirrorUnavailable, match="not reachable"
        ):
            mirror.mirror(log.store, 0, 3, log.grow_to(3))
        assert keys(client, bucket) == set()
        mirror.mirror(log.store, 0, 3, log.note())  # the failure was not remembered
        assert read_mirror(client, bucket, log.verifier).size == 3


class TestObjectLock:
    def test_a_bucket_without_lock_gets_no_retention(
        self, client: Any, bucket: str, log: Log
    ) -> None:
        mirror = mirror_for(client, bucket)
        with recorded(client) as calls:
            mirror.mirror(log.store, 0, 300, log.grow_to(300))
            mirror.mirror(log.store, 300, 600, log.grow_to(600))
        assert mirror.retention() is None
        assert [name for name, _ in calls].count("GetObjectLockConfiguration") == 1
        assert not any("ObjectLockMode" in params for _, params in calls)
        for key in keys(client, bucket):
            assert "ObjectLockMode" not in client.head_object(Bucket=bucket, Key=key)

    def test_the_bucket_default_rule_is_followed(self, client: Any, log: Log) -> None:
        """Tiles and bundles carry the rule's mode and period; the checkpoint is written
        without one (S3 then applies the bucket default to it, as moto does too)."""
        name = locked_bucket(client, {"Mode": "GOVERNANCE", "Days": 30})
        mirror = mirror_for(client, name)
        with recorded(client) as calls:
            mirror.mirror(log.store, 0, 300, log.grow_to(300))
            mirror.mirror(log.store, 300, 520, log.grow_to(520))
        assert mirror.retention() == Retention("GOVERNANCE", timedelta(days=30))
        assert [name for name, _ in calls].count("GetObjectLockConfiguration") == 1
        puts = {params["Key"]: params for op, params in calls if op == "PutObject"}
        assert "ObjectLockMode" not in puts.pop("ledger/checkpoint")
        assert puts and all(
            (params["ObjectLockMode"], params["ObjectLockRetainUntilDate"])
            == ("GOVERNANCE", NOW + timedelta(days=30))
            for params in puts.values()
        )
        for key in puts:
            head = client.head_object(Bucket=name, Key=key)
            assert head["ObjectLockMode"] == "GOVERNANCE"
            assert head["ObjectLockRetainUntilDate"] == NOW + timedelta(days=30)
        assert read_mirror(client, name, log.verifier).size == 520

    def test_a_default_rule_in_years(self, client: Any, log: Log) -> None:
        name = locked_bucket(client, {"Mode": "COMPLIANCE", "Years": 2})
        mirror_for(client, name).mirror(log.store, 0, 3, log.grow_to(3))
        head = client.head_object(Bucket=name, Key="ledger/tile/0/000.p/3")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == NOW + timedelta(days=730)

    def test_a_lock_without_a_rule_retains_for_retention_days(
        self, client: Any, log: Log
    ) -> None:
        name = locked_bucket(client, None)
        mirror_for(client, name, retention_days=10).mirror(log.store, 0, 3, log.grow_to(3))
        for key in ("ledger/tile/0/000.p/3", "ledger/tile/entries/000.p/3"):
            head = client.head_object(Bucket=name, Key=key)
            assert head["ObjectLockMode"] == "COMPLIANCE"
            assert head["ObjectLockRetainUntilDate"] == NOW + timedelta(days=10)
        assert "ObjectLockMode" not in client.head_object(Bucket=name, Key="ledger/checkpoint")
        assert read_mirror(client, name, log.verifier).size == 3

    def test_the_default_retention_is_seven_years(self, client: Any) -> None:
        name = locked_bucket(client, None)
        assert S3LogMirror(client, name).retention() == Retention(
            "COMPLIANCE", timedelta(days=DEFAULT_RETENTION_DAYS)
        )
        assert DEFAULT_RETENTION_DAYS == 2557
