"""Ways to drive the running actors and to look behind them, for the actor suites.

Uploads are driven the way the HTTP handler drives them: a ``StoreDocument``
whose channels the test fills. Outbox rows and blob files are read straight
from the SQLite file and the blob folder, in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import attrs
import trio

from actors.archiver import Archived, ArchiveDocument, ArchiveEntity, EntityArchived
from actors.deps import Backends
from actors.ledger import LogState, Publish
from actors.publisher import PublishPolicy
from actors.runtime import Mailbox, Reply, ask
from actors.system import Sizing, Vault, run_vault
from actors.upload import StoreDocument
from actors.verifier import VerifyDocument
from tests.polling import eventually
from vault.adapters.blobs.local_locks import MUTEX
from vault.config import Settings
from vault.domain.errors import DependencyUnavailable, VaultError
from vault.domain.events import Destination, OutboxEvent, OutboxRow
from vault.domain.models import Actor, Document, DocumentType, EntityType, Role, utcnow
from vault.domain.uploads import UploadForm
from vault.ports import BlobStore, Delivery, EventSink, MetadataStore
from vault.wiring import open_blob_store, open_metadata_store, url_signer

M = TypeVar("M")
R = TypeVar("R")

ASK_SECONDS = 10.0
"""How long a test waits for mailbox room before the actor counts as Busy."""
CHUNK_SIZE = 64 * 1024
ANSWER_SECONDS = 30.0
"""How long a test waits for an actor's answer once the actor holds the message."""
UNTIL_SECONDS = 10.0
"""How long a test waits for the publishers to get somewhere before it fails."""


def a_user(role: Role = Role.ISSUER) -> Actor:
    return Actor.user(uuid4(), role)


def upload_form(
    entity_id: UUID | None = None,
    *,
    actor: Actor | None = None,
    filename: str = "agreement.pdf",
    entity_type: EntityType = EntityType.ISSUER,
) -> UploadForm:
    return UploadForm(
        entity_id=entity_id or uuid4(),
        entity_type=entity_type,
        document_type=DocumentType.OPERATING_AGREEMENT,
        token_id=None,
        metadata={"description": "from the actor suite"},
        filename=filename,
        actor=actor or a_user(),
    )


def chunked(data: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


@attrs.define
class PendingUpload:
    """A ``StoreDocument`` handed to the upload actor, with the ends the HTTP handler keeps."""

    document_id: UUID
    chunks_send: trio.MemorySendChannel[bytes]
    form_send: trio.MemorySendChannel[UploadForm]
    reply_recv: trio.MemoryReceiveChannel[Any]

    async def feed(self, chunks: Sequence[bytes]) -> None:
        """Send the file's chunks and close them; stops early if the actor refuses the file."""
        with self.chunks_send:
            for chunk in chunks:
                try:
                    await self.chunks_send.send(chunk)
                except trio.BrokenResourceError:
                    return

    def complete(self, form: UploadForm | None) -> None:
        """Send the form (or nothing, to abandon) and close the form channel."""
        with self.form_send:
            if form is not None:
                try:
                    self.form_send.send_nowait(form)
                except trio.BrokenResourceError:
                    pass  # the actor has already answered with an error

    async def result(self) -> Document:
        """The actor's answer; a ``VaultError`` answer is raised."""
        with self.reply_recv, trio.fail_after(ANSWER_SECONDS):
            answer = await self.reply_recv.receive()
        if isinstance(answer, VaultError):
            raise answer
        assert isinstance(answer, Document)
        return answer

    def close(self) -> None:
        self.chunks_send.close()
        self.form_send.close()
        self.reply_recv.close()


async def begin_upload(
    vault: Vault,
    *,
    mime: str = "application/pdf",
    document_id: UUID | None = None,
    correlation_id: str | None = "req-actor-suite",
    deadline: float | None = None,
) -> PendingUpload:
    """Put a ``StoreDocument`` in the upload actor's mailbox, as the HTTP handler does."""
    chunks_send, chunks_recv = trio.open_memory_channel[bytes](8)
    form_send, form_recv = trio.open_memory_channel[UploadForm](1)
    reply_send, reply_recv = trio.open_memory_channel[Any](1)
    pending = PendingUpload(document_id or uuid4(), chunks_send, form_send, reply_recv)
    msg = StoreDocument(
        document_id=pending.document_id,
        declared_mime=mime,
        chunks=chunks_recv,
        form=form_recv,
        correlation_id=correlation_id,
        reply=reply_send,
    )
    try:
        await vault.upload.send(msg, deadline=deadline or trio.current_time() + ASK_SECONDS)
    except BaseException:
        pending.close()
        for end in (chunks_recv, form_recv, reply_send):
            end.close()
        raise
    return pending


async def store_document(
    vault: Vault,
    data: bytes | Sequence[bytes],
    form: UploadForm | None = None,
    *,
    mime: str = "application/pdf",
    document_id: UUID | None = None,
    abandon: bool = False,
) -> Document:
    """Upload ``data`` through the upload actor and return the stored document.

    ``abandon`` closes the form channel empty, as when the request ends early.
    """
    pending = await begin_upload(vault, mime=mime, document_id=document_id)
    await pending.feed(chunked(data) if isinstance(data, bytes) else data)
    pending.complete(None if abandon else form or upload_form())
    return await pending.result()


async def _ask(mailbox: Mailbox[M], make: Callable[[Reply[R]], M], returns: type[R]) -> R:
    """``ask`` with a bound on the whole wait, so a lost answer fails the test."""
    with trio.fail_after(ASK_SECONDS + ANSWER_SECONDS):
        return await ask(
            mailbox, make, deadline=trio.current_time() + ASK_SECONDS, returns=returns
        )


async def verify(vault: Vault, document_id: UUID, actor: Actor | None = None) -> Document:
    return await _ask(
        vault.verifier,
        lambda reply: VerifyDocument(document_id, actor or a_user(Role.AUDITOR), "req-v", reply),
        Document,
    )


async def archive(vault: Vault, document_id: UUID, actor: Actor | None = None) -> Archived:
    return await _ask(
        vault.archiver,
        lambda reply: ArchiveDocument(document_id, actor or a_user(), "req-a", reply),
        Archived,
    )


async def archive_entity(vault: Vault, entity_id: UUID, event_id: str) -> EntityArchived:
    return await _ask(
        vault.archiver,
        lambda reply: ArchiveEntity(
            event_id=event_id,
            source="entity_permissions_core",
            action="entity.deleted",
            entity_id=entity_id,
            entity_type="issuer",
            reply=reply,
        ),
        EntityArchived,
    )


# ---------------------------------------------------------------- looking behind


@attrs.frozen
class OutboxRecord:
    """One outbox row as stored, with its body parsed."""

    id: int
    event_id: str
    destination: str
    body: dict[str, Any]
    group_id: str | None
    attempts: int
    delivered_at: str | None
    parked_at: str | None
    last_error: str | None

    @property
    def kind(self) -> str:
        """``event_type`` of a document event, ``action`` of an audit event."""
        return str(self.body.get("event_type") or self.body.get("action") or "")


def database_path(vault: Vault) -> Path:
    path: Path = vault.backends.store.path  # type: ignore[attr-defined]
    return path


def _read_outbox(path: Path) -> list[OutboxRecord]:
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, event_id, destination, body, group_id, attempts, delivered_at,"
            " parked_at, last_error FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [
        OutboxRecord(
            id=row["id"],
            event_id=row["event_id"],
            destination=row["destination"],
            body=json.loads(row["body"]),
            group_id=row["group_id"],
            attempts=row["attempts"],
            delivered_at=row["delivered_at"],
            parked_at=row["parked_at"],
            last_error=row["last_error"],
        )
        for row in rows
    ]


async def outbox(vault: Vault, document_id: UUID | None = None) -> list[OutboxRecord]:
    """Every outbox row, oldest first; only those of one document when given."""
    rows = await trio.to_thread.run_sync(_read_outbox, database_path(vault))
    if document_id is None:
        return rows
    return [row for row in rows if row.group_id == str(document_id)]


def _execute(path: Path, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for sql, params in statements:
                conn.execute(sql, params)
    finally:
        conn.close()


async def execute_sql(vault: Vault, *statements: tuple[str, Sequence[object]]) -> None:
    """Run statements straight on the database, in one transaction, around the store."""
    await trio.to_thread.run_sync(_execute, database_path(vault), statements)


def blob_root(vault: Vault) -> Path:
    return vault.backends.settings.vault_data_dir / "blobs"


def object_path(vault: Vault, storage_key: str) -> Path:
    return blob_root(vault) / "objects" / storage_key


def _files_under(root: Path) -> list[Path]:
    """Every file under ``root`` but the embedded blob store's own lock file and its data
    keys (one beside each object: ``test_blob_disposal`` and ``data_keys`` count them)."""
    keys = root / "keys"
    return sorted(
        path for path in root.rglob("*")
        if path.is_file() and path.name != MUTEX and keys not in path.parents
    )


def data_keys(vault: Vault) -> int:
    """How many data keys the embedded blob store holds."""
    folder = blob_root(vault) / "keys"
    return sum(1 for p in folder.iterdir() if p.is_file()) if folder.exists() else 0


async def files_under(root: Path) -> list[Path]:
    return await trio.to_thread.run_sync(_files_under, root)


async def read_back(vault: Vault, doc: Document) -> bytes:
    """The document's bytes as the blob store serves them now."""
    blobs = vault.backends.blobs
    return await vault.backends.in_blobs(
        lambda: b"".join(blobs.read(doc.storage_key, doc.storage_version_id))
    )


# ---------------------------------------------------------------- publishers


@contextlib.asynccontextmanager
async def vault_on_sinks(
    nursery: trio.Nursery,
    settings: Settings,
    sinks: Mapping[Destination, EventSink],
    publish_policy: PublishPolicy,
) -> AsyncIterator[Vault]:
    """Every actor running on SQLite and local blobs, publishing to ``sinks``; stopped after."""

    def open_adapters() -> tuple[MetadataStore, BlobStore]:
        store = open_metadata_store(settings)
        store.migrate()
        return store, open_blob_store(settings, url_signer(settings))

    store, blobs = await trio.to_thread.run_sync(open_adapters)
    backends = Backends(settings=settings, store=store, blobs=blobs, sinks=dict(sinks))
    try:
        running: Vault = await nursery.start(run_vault, backends, Sizing(publish=publish_policy))
        try:
            yield running
        finally:
            await running.stop(5)
    finally:
        await trio.to_thread.run_sync(store.close)


async def publish(vault: Vault) -> LogState:
    """Have the ledger integrate everything pending and sign it now."""
    return await ask(vault.ledger, Publish, deadline=trio.current_time() + 5, returns=LogState)


async def settled(vault: Vault) -> None:
    """Wait until both publishers have finished their first drain and sit idle."""
    await eventually(
        lambda: all(
            "backlog" in publisher.mailbox.health.extra
            for publisher in (vault.audit_publisher, vault.alerter)
        ),
        "both publishers to finish their first drain",
        within=UNTIL_SECONDS,
    )


async def append(vault: Vault, events: Sequence[OutboxEvent]) -> None:
    """Commit events with no nudge, as a state change would but without telling anyone."""
    await vault.backends.in_db(vault.backends.store.append_events, list(events))


async def rows_of(vault: Vault, events: Sequence[OutboxEvent]) -> list[OutboxRecord]:
    """The outbox rows of ``events``, oldest first."""
    wanted = {str(event.event_id) for event in events}
    return [row for row in await outbox(vault) if row.event_id in wanted]


async def until_rows(
    vault: Vault, events: Sequence[OutboxEvent], check: Callable[[OutboxRecord], bool]
) -> None:
    """Wait until ``check`` holds for every row of ``events``."""

    async def holds() -> bool:
        return all(check(row) for row in await rows_of(vault, events))

    await eventually(holds, f"{len(events)} outbox rows to pass {check.__name__}",
                     within=UNTIL_SECONDS)


def delivered(row: OutboxRecord) -> bool:
    return row.delivered_at is not None


def parked(row: OutboxRecord) -> bool:
    return row.parked_at is not None


class FakeSink:
    """An ``EventSink`` a test can take down, or make refuse some events for good."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.refused: set[UUID] = set()
        self.delivered: list[OutboxRow] = []

    def send(self, rows: Sequence[OutboxRow]) -> list[Delivery]:
        if self.down:
            raise DependencyUnavailable(f"{self.name} is unreachable")
        deliveries = []
        for row in rows:
            if row.event.event_id in self.refused:
                deliveries.append(Delivery(row.id, ok=False, permanent=True, error="rejected"))
            else:
                self.delivered.append(row)
                deliveries.append(Delivery(row.id, ok=True))
        return deliveries

    @property
    def delivered_ids(self) -> set[UUID]:
        return {row.event.event_id for row in self.delivered}


def an_event(destination: Destination = Destination.DOCUMENT_EVENTS) -> OutboxEvent:
    event_id = uuid4()
    return OutboxEvent(
        event_id=event_id,
        destination=destination,
        body={"event_id": str(event_id), "event_type": "test.event"},
        attributes={"event_type": "test.event"},
        group_id=None,
        created_at=utcnow(),
    )
