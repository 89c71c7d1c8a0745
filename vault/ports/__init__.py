"""The seams between the domain and the outside world.

Every adapter is synchronous and blocking; actors call it through
``trio.to_thread.run_sync`` with a ``CapacityLimiter``. Each Protocol has a
real implementation per backend and one shared contract test suite.

Errors: adapters raise only ``vault.domain.errors`` types. A driver's own
exception never crosses these methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

import attrs

from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.locks import ObjectLock, Retention, StoredVersion
from vault.domain.log import Integration, SignedCheckpoint, StoredLeaf, TileKey, TreeHead
from vault.domain.models import Document, DocumentStatus, EntityType, LedgerEntry
from vault.ports.outside import OutsideStore as OutsideStore
from vault.ports.pages import PageCursor as PageCursor
from vault.ports.retention import RecordsStore as RecordsStore

EventsFor = Callable[[Document], Sequence[OutboxEvent]]
"""Builds the events of a change from the document as it is after the change."""


@attrs.frozen
class CascadeBatch:
    """What one batch of an entity cascade did."""

    archived: int
    """Documents archived by this batch, each with its events."""
    finished: bool
    """The ``processed_events`` row was written with this batch: the cascade is done."""


@attrs.frozen
class OutboxStats:
    pending: int
    parked: int
    oldest_pending_at: datetime | None


@attrs.frozen
class ParkedRow:
    """An outbox row set aside for good, as an operator reviews it."""

    row: OutboxRow
    parked_at: datetime
    last_error: str | None


class MetadataStore(OutsideStore, RecordsStore, Protocol):
    """Documents, the ledger, the outbox and processed events, transactionally."""

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run any number of times."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a trivial query."""

    def size_limit(self) -> int:
        """The largest ``size_bytes`` a document row can hold (after ``migrate``)."""

    def close(self) -> None: ...

    def find_active_duplicate(self, entity_id: UUID, sha256_hash: str) -> UUID | None:
        """The id of a non-archived document of this entity with this hash, if any."""

    def record_upload(
        self, doc: Document, events: EventsFor, *, unique_hash: bool
    ) -> Document:
        """Register ``doc`` in one transaction and return it as stored.

        Writes the pending ``registered`` leaf (``on_chain_reference`` is
        ``0x`` and its leaf hash), inserts the row, and writes
        ``events(stored_doc)`` to the outbox.
        With ``unique_hash`` a database-level guard rejects a second
        non-archived document with the same (entity_id, sha256_hash), even
        from another process: ``DuplicateDocument(existing_id)``.
        """

    def get_document(self, document_id: UUID) -> Document:
        """The document, or ``DocumentNotFound``."""

    def documents_present(self, document_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these ids have a document row (in any status)."""

    def list_documents(
        self,
        entity_id: UUID,
        *,
        entity_type: EntityType | None,
        include_archived: bool,
        limit: int,
        after: PageCursor | None,
    ) -> list[Document]:
        """Up to ``limit`` documents, newest first (created_at desc, id desc)."""

    def ledger_entry(self, reference: str) -> LedgerEntry | None:
        """The hash-chain entry (the release before the log) a reference names."""

    def ledger_predecessor(self, entry: LedgerEntry) -> LedgerEntry | None:
        """The entry just before ``entry`` in the chain (None for the first)."""

    # -- the verifiable log ------------------------------------------------

    def ledger_head(self) -> TreeHead:
        """The integrated tree: its size, right edge and log id."""

    def pending_leaves(self) -> int:
        """How many leaves wait to be integrated."""

    def integrate_leaves(self, limit: int, at: datetime) -> Integration:
        """Give up to ``limit`` pending leaves their indexes, oldest first, in one transaction.

        Extends the tiles and the tree's edge with them; serialised with
        every other integration, also across processes.
        """

    def ledger_tiles(self, keys: Sequence[TileKey]) -> dict[TileKey, bytes]:
        """The stored hash tiles among ``keys`` (each as it is now: a tile only grows)."""

    def ledger_leaves(self, start: int, end: int) -> list[bytes]:
        """The integrated leaves with indexes ``[start, end)``, in order."""

    def registered_leaf(self, document_id: UUID) -> StoredLeaf | None:
        """The document's ``registered`` leaf, pending or integrated."""

    def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        """Keep a signed checkpoint (one per tree size; a second of a size is ignored)."""

    def latest_checkpoint(self) -> SignedCheckpoint | None: ...

    def checkpoint_at(self, size: int) -> SignedCheckpoint | None: ...

    def record_verification(
        self,
        document_id: UUID,
        *,
        status: DocumentStatus,
        verified_by: UUID | None,
        verified_at: datetime,
        calculated_hash: str | None,
        events: EventsFor,
        freeze_on_mismatch: bool = False,
    ) -> Document:
        """Set the verification outcome and write its leaf and events, in one transaction.

        ``status`` is ``verified`` or ``mismatch``; an archived document keeps
        ``archived`` (verification never un-archives) but still records
        ``verified_by`` and ``hash_verified_at``. The leaf is ``verified``
        with the recorded hash, or ``mismatch`` with ``calculated_hash``.
        """

    def archive_document(
        self,
        document_id: UUID,
        *,
        archived_by: UUID | None,
        archived_at: datetime,
        events: EventsFor,
    ) -> tuple[Document, bool]:
        """Archive one document; ``(doc, False)`` and no events if it already was."""

    def archive_entity(
        self,
        *,
        event_id: str,
        source: str,
        action: str,
        entity_id: UUID,
        entity_type: str,
        archived_at: datetime,
        events: EventsFor,
        batch_size: int,
    ) -> CascadeBatch | None:
        """One batch of an entity's cascade, in one transaction.

        Archives up to ``batch_size`` non-archived documents of the entity
        (oldest first), each with ``events(doc)``. When no live document of
        the entity is left afterwards, the same transaction writes the
        ``processed_events`` row and the batch is ``finished``. The caller
        repeats until a batch is finished, so no transaction grows with the
        entity, and a failure between batches leaves a prefix archived with
        its events and nothing half-done: a later delivery archives only
        the rest.

        Returns None when ``event_id`` was already processed (nothing
        changes then). Calls for one ``event_id`` are serialised, also
        across processes, so a concurrent delivery never archives a
        document twice.
        """

    def append_events(self, events: Sequence[OutboxEvent]) -> None:
        """Write events that accompany no state change (a download URL issued)."""

    def claim_outbox(
        self, destinations: Sequence[Destination], limit: int, now: datetime, lease_seconds: float
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due, undelivered, unparked rows, oldest first.

        A leased row is not handed out again until ``now + lease_seconds``,
        so two publishers never send one row at the same time.
        """

    def mark_delivered(self, row_ids: Sequence[int], at: datetime) -> None: ...

    def mark_failed(self, row_id: int, error: str, retry_at: datetime) -> None:
        """Count a failed attempt and hold the row until ``retry_at``."""

    def park(self, row_id: int, error: str, at: datetime) -> None:
        """Set a row aside for good: it can never be delivered as it is."""

    def outbox_stats(self, destination: Destination) -> OutboxStats: ...

    def prune_delivered(
        self, destinations: Sequence[Destination], delivered_before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` rows delivered before ``delivered_before``; how many went.

        Never a pending or a parked row. The oldest deliveries go first.
        """

    def parked_rows(self, limit: int) -> list[ParkedRow]:
        """Up to ``limit`` parked rows, oldest first."""

    def requeue_parked(self, row_ids: Sequence[int]) -> list[ParkedRow]:
        """Put these parked rows back in line (due now, attempts from zero); those requeued.

        Ids that are not parked rows are left alone and not returned.
        """

    def drop_parked(self, row_ids: Sequence[int]) -> list[ParkedRow]:
        """Delete these parked rows for good; those dropped, as they were.

        Ids that are not parked rows are left alone and not returned.
        """



class BlobWriter(Protocol):
    """One object being written; nothing is visible until ``commit``."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> str | None:
        """Make the object durable and visible; returns its version id, if any."""

    def abort(self) -> None:
        """Discard everything written; safe to call after a failed commit."""


LIST_PAGE_SIZE = 1000
"""Objects per page of ``BlobStore.list_objects`` unless asked otherwise (S3's own maximum)."""


@attrs.frozen
class StoredObject:
    """One committed object, as a listing of the store sees it."""

    key: str
    last_modified: datetime
    """When it was last written, timezone-aware: a file's mtime, S3's ``LastModified``."""


class BlobStore(Protocol):
    """Encrypted object storage for document bytes."""

    bucket: str
    """What ``storage_bucket`` records (``"local"`` on the embedded default)."""

    def ping(self) -> None:
        """Raise ``BlobStoreUnavailable`` unless the store is reachable and writable."""

    def open_writer(self, key: str, retention: Retention | None = None) -> BlobWriter:
        """A writer for a new object under ``key``; nothing is visible until its ``commit``.

        With ``retention`` the object is written locked: on S3 the
        ``PutObject`` or ``CreateMultipartUpload`` carries ``ObjectLockMode``
        and ``ObjectLockRetainUntilDate``; the local store records the lock
        when the writer commits. The local store refuses (``StorageLocked``,
        here and again at ``commit``) to replace an object whose lock blocks
        deletion; on S3 a new version leaves the locked one untouched.
        """

    def object_lock_enabled(self) -> bool:
        """Whether the storage itself enforces retention and legal holds.

        S3: the bucket's ``GetObjectLockConfiguration`` says
        ``ObjectLockEnabled: Enabled``. The local store always does. Raises
        ``BlobStoreUnavailable`` when the store cannot be asked.
        """

    def lock_state(self, key: str, version_id: str | None) -> ObjectLock:
        """The retention and legal hold of that version (None: the current object).

        An object with neither is ``ObjectLock.unlocked``. A missing object or
        version is ``BlobUnreadable``, as for ``read``.
        """

    def extend_retention(
        self, key: str, version_id: str | None, retention: Retention
    ) -> ObjectLock:
        """Lengthen or strengthen the object's retention; returns its lock afterwards.

        The retention becomes ``stronger(current, retention)``: the later date
        and the stronger mode. It is never shortened nor weakened, and S3 is
        asked only when something changes (never with a governance bypass).
        A missing object is ``BlobUnreadable``; an S3 bucket without Object
        Lock is ``BlobStoreUnavailable`` saying so.
        """

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> ObjectLock:
        """Turn the object's legal hold on or off; returns its lock afterwards.

        Errors as ``extend_retention``.
        """

    def read(self, key: str, version_id: str | None) -> Iterator[bytes]:
        """The plaintext bytes, as a stream of chunks.

        Raises ``BlobUnreadable`` when the object is missing or fails its
        integrity checks; that may happen mid-stream.
        """

    def delete(self, key: str, version_id: str | None) -> None:
        """Remove an object: a write whose record failed, or one no record names.

        Deleting what is not there is not an error. An object (the version,
        or with None the current object) whose ``lock_state`` blocks deletion
        now is refused with ``StorageLocked`` and stays as it is.
        """

    def versioning_enabled(self) -> bool:
        """Whether every overwrite or delete keeps the earlier version.

        S3: ``GetBucketVersioning`` answers ``Status: Enabled`` (Object Lock
        needs it, and a suspended bucket would let a new ``null`` version
        replace a locked one's place). The local store never replaces a
        locked object, so it answers True. ``BlobStoreUnavailable`` when the
        store cannot be asked.
        """

    def stored_versions(self, key: str) -> list[StoredVersion]:
        """Every stored version of ``key`` with its lock, newest first; ``[]`` when none.

        S3: every version and delete marker whose key is exactly ``key``
        (``ListObjectVersions``, all pages). Local: the one file, if present.
        """

    def destroy(self, key: str) -> list[StoredVersion]:
        """Delete every stored version of ``key`` and what makes it readable.

        Every version's lock is checked before anything is deleted: if one
        blocks deletion now, ``StorageLocked`` and nothing is deleted. S3:
        each version and delete marker by its version id (never a governance
        bypass). Local: the file, its data key (so a copy of the file left
        elsewhere cannot be decrypted) and its lock record. Returns what was
        deleted; nothing there is ``[]``, so a repeated destroy is harmless.
        """

    def list_objects(
        self, prefix: str, *, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[list[StoredObject]]:
        """The committed objects whose keys start with ``prefix``, one page at a time.

        ``prefix`` names a folder: ``""`` or segments each ending in ``/``
        (``"documents/"``); any other prefix, or a ``page_size`` outside
        1..1000, is ``ValueError`` before any I/O. Keys at any depth under
        it are listed, in no particular order. A page holds 1 to
        ``page_size`` objects and is fetched only when the iterator is
        advanced, so a listing holds one page in memory whatever the store
        holds. Writes not yet committed are never listed; objects committed
        or deleted while the listing runs may or may not be.

        Raises ``BlobStoreUnavailable`` while iterating when the store cannot
        be listed.
        """

    def presign(
        self,
        key: str,
        version_id: str | None,
        *,
        filename: str,
        mime_type: str,
        expires_in: int,
        document_id: UUID,
    ) -> str:
        """A URL that serves the object without further identity until it expires."""


@attrs.frozen
class Delivery:
    """What happened to one row handed to a sink."""

    row_id: int
    ok: bool
    permanent: bool = False
    error: str | None = None


class EventSink(Protocol):
    """Where one destination's outbox rows go."""

    name: str

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        """Deliver rows; one ``Delivery`` per row, in any order.

        Raises ``DependencyUnavailable`` when nothing could be sent at all.
        """
