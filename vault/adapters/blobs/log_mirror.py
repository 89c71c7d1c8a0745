"""A static mirror of the verifiable log in S3, in the C2SP tlog-tiles layout.

Under ``prefix`` (``ledger/`` unless told otherwise) the bucket holds what
the HTTP routes serve: ``<prefix>checkpoint``, the hash tiles
``<prefix>tile/<L>/<N>[.p/<W>]`` and the entry bundles
``<prefix>tile/entries/<N>[.p/<W>]``, byte for byte, so any tlog-tiles
client can read the log from the bucket alone. Document objects are keyed
``documents/<uuid>`` (``vault.domain.uploads.storage_key``) and the orphan
sweep lists only ``documents/``, so the default prefix never collides with
them even in the documents' own bucket. (A public mirror is better kept in
a bucket of its own: the documents' bucket encrypts with KMS and is private.)

``S3LogMirror.mirror`` moves the mirror from one checkpoint size to a larger
one: it writes the paths ``vault.domain.mirror.mirror_paths`` names (the
tiles and bundles the new size has and the previous one lacked: new full
ones, and new partial ones), read from the metadata store, and then, last,
the signed checkpoint: a reader never sees a checkpoint whose tiles are
missing. Before writing anything it checks that the note is a checkpoint of
that size whose root the store's tiles give (``MirrorRefused`` otherwise),
so a wrong note is never published. ``previous_size`` must be a size
mirrored completely before (its checkpoint written); 0 writes everything.

*Idempotent*: every tile and bundle path always holds the same bytes (a full
tile never changes, a partial path names its width), so re-running the same
``mirror`` after a crash part-way writes the same bytes again, harmlessly,
and finishes with the checkpoint. Until then readers see the previous one.

*Objects*: tiles and bundles are ``application/octet-stream`` with
``Cache-Control: public, max-age=31536000, immutable``; the checkpoint is
``text/plain; charset=utf-8`` with ``no-cache``, since it is overwritten by
each mirror. Every ``PutObject`` carries a SHA-256 checksum S3 checks.

*Object Lock*: the bucket's configuration is read once
(``GetObjectLockConfiguration``; a bucket that has none answers an error
that means "no lock") and kept. In a bucket with Object Lock enabled, tiles
and bundles are written with an explicit retention: the bucket's default
rule when it has one (its mode, and its days or years, a year counted as
365 days, from the time of writing), else ``COMPLIANCE`` for
``retention_days``. The checkpoint gets no retention of its own. A locked
bucket is always versioned, so every checkpoint written stays as a
noncurrent version; and when the bucket has a default rule S3 applies it to
each checkpoint version too (it cannot be opted out of per object), so each
is kept for the default period: a lifecycle rule can expire them only after.

Errors: botocore's exceptions become ``MirrorUnavailable`` (a
``DependencyUnavailable``) with a one-line detail; the store's own errors
(``StoreUnavailable``) pass through. Blocking: actors call it in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import attrs
from botocore.exceptions import BotoCoreError, ClientError

from vault.adapters.blobs.naming import check_prefix
from vault.adapters.blobs.s3_writer import CHECKSUM_ALGORITHM, error_code, lock_configuration
from vault.domain.checkpoint import CheckpointError, checkpoint_body
from vault.domain.errors import DependencyUnavailable
from vault.domain.log import MissingTile, TileSet, tile_bytes
from vault.domain.merkle import root_at
from vault.domain.mirror import mirror_paths
from vault.domain.tiles import TILE_WIDTH, BundleId, TileId, encode_bundle, level_counts
from vault.ports import MetadataStore

T = TypeVar("T")

DEFAULT_PREFIX: Final = "ledger/"
CHECKPOINT_NAME: Final = "checkpoint"
DEFAULT_RETENTION_DAYS: Final = 2557
"""About seven years."""
DAYS_PER_YEAR: Final = 365

TILE_CONTENT_TYPE: Final = "application/octet-stream"
TILE_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
CHECKPOINT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
CHECKPOINT_CACHE_CONTROL: Final = "no-cache"

TILES_PER_READ: Final = 256
"""Tiles asked of the store at a time."""
BUNDLES_PER_READ: Final = 16
"""Entry bundles whose leaves are read from the store at a time."""

LOCK_MODES: Final = frozenset({"GOVERNANCE", "COMPLIANCE"})


class MirrorUnavailable(DependencyUnavailable):
    """The mirror's bucket could not be read or written."""


class MirrorRefused(ValueError):
    """The note or the store cannot make this checkpoint's mirror: nothing was written."""


@attrs.frozen
class MirrorResult:
    """What one ``mirror`` wrote: objects (the checkpoint included) and their bytes."""

    objects: int
    bytes: int


@attrs.frozen
class Retention:
    """The retention tiles and bundles are written with in a locked bucket."""

    mode: str
    """``GOVERNANCE`` or ``COMPLIANCE``."""
    period: timedelta


def _now() -> datetime:
    return datetime.now(UTC)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class S3LogMirror:
    """The log's tlog-tiles mirror under ``prefix`` in one S3 bucket."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        check_prefix(prefix)
        if retention_days < 1:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.retention_days = retention_days
        self._clock = clock
        self._lock: tuple[Retention | None] | None = None
        """The bucket's answer, once known: ``(None,)`` for a bucket without Object Lock."""

    @property
    def checkpoint_key(self) -> str:
        return self.prefix + CHECKPOINT_NAME

    def key(self, path: TileId | BundleId) -> str:
        """The object key of a tile or bundle."""
        return self.prefix + path.path

    def retention(self) -> Retention | None:
        """The retention tiles get, None when the bucket has no Object Lock (asked once)."""
        if self._lock is None:
            self._lock = (self._read_lock(),)
        return self._lock[0]

    def mirror(
        self, store: MetadataStore, previous_size: int, checkpoint_size: int, note: str
    ) -> MirrorResult:
        """Move the mirror from ``previous_size`` (0: empty) to the checkpoint ``note``.

        ``note`` is the signed checkpoint of size ``checkpoint_size``, verbatim.
        Writes the new tiles and bundles, then the checkpoint; safe to run
        again after a failure part-way (every path gets the same bytes).
        ``MirrorRefused`` before any write when the note is not a checkpoint
        of that size or the store's tiles do not give its root (and, part-way,
        when a damaged store lacks a tile or leaf); ``MirrorUnavailable`` when
        S3 fails. After either, the checkpoint is not written.
        """
        try:
            checkpoint = checkpoint_body(note)
        except CheckpointError as exc:
            raise MirrorRefused(f"the note is not a checkpoint: {exc}") from exc
        if checkpoint.size != checkpoint_size:
            raise MirrorRefused(
                f"the note is a checkpoint of size {checkpoint.size}, not {checkpoint_size}"
            )
        paths = mirror_paths(previous_size, checkpoint_size)
        edge = self._read_tiles(store, _partial_tiles(checkpoint_size))
        _check_root(checkpoint_size, checkpoint.root_hash, edge)
        wanted = set(paths)
        partial = [(tile, data) for tile, data in edge if tile in wanted]
        full = [p for p in paths if isinstance(p, TileId) and not p.is_partial]
        retention = self.retention()
        until = None if retention is None else self._clock() + retention.period
        written = [0, 0]

        def put(key: str, body: bytes) -> None:
            self._put(key, body, TILE_CONTENT_TYPE, TILE_CACHE_CONTROL, retention, until)
            written[0] += 1
            written[1] += len(body)

        for chunk in _chunks(full, TILES_PER_READ):
            for tile, data in self._read_tiles(store, chunk):
                put(self.key(tile), data)
        bundles = [p for p in paths if isinstance(p, BundleId)]
        for run in _chunks(bundles, BUNDLES_PER_READ):
            for bundle, data in _read_bundles(store, run):
                put(self.key(bundle), data)
        for tile, data in partial:
            put(self.key(tile), data)
        body = note.encode("utf-8")
        self._put(
            self.checkpoint_key, body, CHECKPOINT_CONTENT_TYPE, CHECKPOINT_CACHE_CONTROL, None, None
        )
        return MirrorResult(objects=written[0] + 1, bytes=written[1] + len(body))

    def mirrored(self) -> str | None:
        """The checkpoint note the bucket holds now (None: nothing mirrored yet)."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.checkpoint_key)
            body: bytes = answer["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise MirrorUnavailable(
                f"cannot read {self.checkpoint_key} from S3 bucket {self.bucket}: {_one_line(exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise MirrorUnavailable(
                f"S3 bucket {self.bucket} is not reachable: {_one_line(exc)}"
            ) from exc
        return body.decode("utf-8", errors="replace")

    # -- S3 ----------------------------------------------------------------

    def _read_lock(self) -> Retention | None:
        config = lock_configuration(
            self._client, self.bucket, lambda detail: MirrorUnavailable(" ".join(detail.split()))
        )
        if config is None:
            return None
        rule = (config.get("Rule") or {}).get("DefaultRetention")
        if not rule:
            return Retention("COMPLIANCE", timedelta(days=self.retention_days))
        mode = rule.get("Mode")
        days = int(rule.get("Days") or 0) + DAYS_PER_YEAR * int(rule.get("Years") or 0)
        if mode not in LOCK_MODES or days < 1:
            raise MirrorUnavailable(
                f"S3 bucket {self.bucket} has a default retention rule the mirror cannot"
                f" follow: {rule!r}"
            )
        return Retention(str(mode), timedelta(days=days))

    def _put(
        self,
        key: str,
        body: bytes,
        content_type: str,
        cache_control: str,
        retention: Retention | None,
        until: datetime | None,
    ) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "CacheControl": cache_control,
            "ChecksumAlgorithm": CHECKSUM_ALGORITHM,
        }
        if retention is not None and until is not None:
            params["ObjectLockMode"] = retention.mode
            params["ObjectLockRetainUntilDate"] = until
        try:
            self._client.put_object(**params)
        except (BotoCoreError, ClientError) as exc:
            raise MirrorUnavailable(
                f"cannot write {key} to S3 bucket {self.bucket}: {_one_line(exc)}"
            ) from exc

    # -- the store ---------------------------------------------------------

    def _read_tiles(
        self, store: MetadataStore, tiles: Sequence[TileId]
    ) -> list[tuple[TileId, bytes]]:
        if not tiles:
            return []
        stored = store.ledger_tiles([(tile.level, tile.index) for tile in tiles])
        found: list[tuple[TileId, bytes]] = []
        for tile in tiles:
            hashes = stored.get((tile.level, tile.index))
            data = None if hashes is None else tile_bytes(hashes, tile.width)
            if data is None:
                raise MirrorRefused(f"the store does not hold {tile.path} (width {tile.width})")
            found.append((tile, data))
        return found


def _read_bundles(
    store: MetadataStore, bundles: Sequence[BundleId]
) -> list[tuple[BundleId, bytes]]:
    """Each bundle's bytes, from one read of the leaves they span (consecutive bundles)."""
    start = bundles[0].index * TILE_WIDTH
    end = bundles[-1].index * TILE_WIDTH + bundles[-1].width
    leaves = store.ledger_leaves(start, end)
    found: list[tuple[BundleId, bytes]] = []
    for bundle in bundles:
        first = bundle.index * TILE_WIDTH - start
        mine = leaves[first:first + bundle.width]
        if len(mine) != bundle.width:
            raise MirrorRefused(f"the store does not hold the leaves of {bundle.path}")
        found.append((bundle, encode_bundle(mine)))
    return found


def _partial_tiles(size: int) -> list[TileId]:
    """The partial tiles of a tree of ``size``: they hold every node of its right edge."""
    return [TileId(level, full, width) for level, full, width in level_counts(size) if width]


def _check_root(size: int, root: bytes, partial: Sequence[tuple[TileId, bytes]]) -> None:
    """The checkpoint's root must be the tree's: every right-edge node is in a partial tile."""
    tiles = TileSet({(tile.level, tile.index): data for tile, data in partial})
    try:
        computed = root_at(size, tiles.get_node)
    except MissingTile as exc:
        raise MirrorRefused(f"the store's tiles cannot give the root: {exc}") from exc
    if computed != root:
        raise MirrorRefused(
            f"the store's tree of size {size} has root {computed.hex()},"
            f" the checkpoint says {root.hex()}"
        )
