"""Dispositions in the ``MetadataStore`` on SQLite and PostgreSQL: proposal, approval by a
second person, execution with its certificate, every refusal leaving nothing disposed, the
database's own refusals, and two stores on one database (races on PostgreSQL).

The object store is ``Shelf``, a stand-in holding versions in memory: what ``destroy`` does to
real objects is ``test_blob_disposal``; here it is what the store asks of it, and when.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.vault.store_helpers import BASE, StoreBackend, integrate_all, make_document, race
from tests.vault.test_records_store import ADMIN, OFFICER, audits, hold, put
from vault.domain.disposition import (
    DispositionOutOfTurn,
    DispositionStatus,
    NotDisposable,
    Proposal,
)
from vault.domain.errors import DocumentNotFound, Forbidden
from vault.domain.events import Destination
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.locks import LockMode, ObjectLock, StorageLocked, StoredVersion
from vault.domain.models import Actor, Document, DocumentStatus, Role
from vault.ports import MetadataStore

OTHER_ADMIN = Actor.user(uuid4(), Role.ADMIN)
LATER = BASE + timedelta(days=2)  # past a P1D retention


class Shelf:
    """Object versions by key; ``destroy`` deletes them all, as the BlobStore contract says."""

    def __init__(self) -> None:
        self.versions: dict[str, list[StoredVersion]] = {}
        self.destroyed: list[str] = []
        self.on_destroy: Callable[[str], None] = lambda key: None

    def put(self, doc: Document, count: int = 1, lock: ObjectLock | None = None) -> None:
        self.versions[doc.storage_key] = [
            StoredVersion(f"v{n}-{doc.id.hex[:6]}", False, lock or ObjectLock.unlocked())
            for n in range(count)
        ]

    def stored_versions(self, key: str) -> list[StoredVersion]:
        return list(self.versions.get(key, []))

    def destroy(self, key: str) -> list[StoredVersion]:
        self.on_destroy(key)
        gone = self.versions.pop(key, [])
        if any(v.lock.blocks_deletion(LATER) for v in gone):
            self.versions[key] = gone
            raise StorageLocked(f"{key} is locked")
        self.destroyed.append(key)
        return gone


def stocked(store: MetadataStore, shelf: Shelf, count: int = 1, **kw: Any) -> list[Document]:
    """``count`` documents uploaded at BASE under a P1D policy, each with two versions."""
    if not store.retention_policies():
        put(store, "P1D")
    docs = []
    for _ in range(count):
        doc = store.record_upload(make_document(**kw), lambda d: [], unique_hash=True)
        shelf.put(doc, 2)
        docs.append(doc)
    return docs


def propose(store: MetadataStore, docs: list[Document], at: datetime = LATER) -> Any:
    return store.propose_disposition(
        Proposal(tuple(d.id for d in docs), "retention ended"), actor=ADMIN,
        correlation_id="req-p", at=at,
    )


def approve(store: MetadataStore, disposition_id: UUID, actor: Actor = OFFICER) -> Any:
    return store.approve_disposition(disposition_id, actor=actor, correlation_id=None, at=LATER)


def execute(store: MetadataStore, disposition_id: UUID, shelf: Shelf) -> Any:
    return store.execute_disposition(disposition_id, shelf,  # type: ignore[arg-type]
                                     actor=OFFICER, correlation_id="req-x", at=LATER)


def approved(store: MetadataStore, shelf: Shelf, count: int = 1) -> tuple[list[Document], Any]:
    docs = stocked(store, shelf, count)
    made = propose(store, docs)
    approve(store, made.disposition_id)
    return docs, made


def leaves(store: MetadataStore) -> list[Leaf]:
    size = integrate_all(store)
    return [Leaf.parse(raw) for raw in store.ledger_leaves(0, size)]


class TestLifecycle:
    def test_execution_leaves_tombstones_leaves_events_and_a_certificate(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        docs, made = approved(store, shelf, 2)
        assert made.status is DispositionStatus.PROPOSED
        done = execute(store, made.disposition_id, shelf)
        assert done.status is DispositionStatus.EXECUTED
        assert (done.proposed_by, done.approved_by, done.executed_by) == (
            ADMIN.id, OFFICER.id, OFFICER.id)
        assert done.executed_at == done.holds_checked_at == LATER
        assert shelf.destroyed == [d.storage_key for d in docs] and shelf.versions == {}
        for doc, item in zip(docs, done.items, strict=True):
            assert (item.document_id, item.sha256_hash, item.size_bytes) == (
                doc.id, doc.sha256_hash, doc.size_bytes)
            assert (item.policy_version, item.retention_mode) == (1, "compliance")
            assert item.retain_until == BASE + timedelta(days=1)
            assert [v.version_id for v in item.storage_versions or ()] == [
                f"v0-{doc.id.hex[:6]}", f"v1-{doc.id.hex[:6]}"]
            assert item.leaf_hash is not None and item.ledger_index is None  # not integrated
            tomb = store.get_document(doc.id)
            assert tomb.status is DocumentStatus.DISPOSED and tomb.sha256_hash == doc.sha256_hash
        disposed = [leaf for leaf in leaves(store) if leaf.kind is LeafKind.DISPOSED]
        assert [leaf.document_id for leaf in disposed] == [d.id for d in docs]
        certificate = store.get_disposition(made.disposition_id)
        assert [i.ledger_index for i in certificate.items] == [2, 3]  # after the 2 registered
        audited = [a for a in audits(store) if "dispos" in a["action"]]
        assert sorted(a["action"] for a in audited) == [
            "disposition.approved", "disposition.executed", "disposition.proposed",
            "document.disposed", "document.disposed"]
        by_document = {a["entity_id"]: a for a in audited if a["action"] == "document.disposed"}
        assert by_document[str(docs[0].id)]["details"]["storage_versions"] == [
            {"version_id": f"v{n}-{docs[0].id.hex[:6]}", "delete_marker": False} for n in (0, 1)]
        assert by_document[str(docs[0].id)]["actor_id"] == str(OFFICER.id)
        rows = store.claim_outbox([Destination.DOCUMENT_EVENTS], 100, BASE, 30)
        disposed_events = [r.event.body for r in rows
                           if r.event.body["event_type"] == "document.disposed"]
        assert [e["payload"]["document_id"] for e in disposed_events] == [str(d.id) for d in docs]
        assert disposed_events[0]["payload"]["disposition_id"] == str(made.disposition_id)

    def test_the_same_content_may_be_uploaded_again_after_disposal(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        (doc,), made = approved(store, shelf)
        execute(store, made.disposition_id, shelf)
        again = make_document(entity_id=doc.entity_id, sha256_hash=doc.sha256_hash)
        assert store.record_upload(again, lambda d: [], unique_hash=True).id == again.id

    def test_listing_and_eligibility(self, store: MetadataStore) -> None:
        shelf = Shelf()
        docs = stocked(store, shelf, 3)
        held = hold(store, document_ids=(docs[2].id,))
        assert store.eligible_for_disposition(BASE, limit=10, after=None) == []
        eligible = store.eligible_for_disposition(LATER, limit=10, after=None)
        assert {e.document_id for e in eligible} == {docs[0].id, docs[1].id}
        first, = store.eligible_for_disposition(LATER, limit=1, after=None)
        rest = store.eligible_for_disposition(
            LATER, limit=10, after=(first.retain_until, first.document_id))
        assert [first.document_id, *(e.document_id for e in rest)] == [
            e.document_id for e in eligible]
        assert held.hold_id is not None
        made = propose(store, docs[:2])
        listed = store.list_dispositions(status=None, limit=10, after=None)
        assert [d.disposition_id for d in listed] == [made.disposition_id]
        assert store.list_dispositions(status=DispositionStatus.EXECUTED, limit=10,
                                       after=None) == []


class TestRefusals:
    def test_retention_a_hold_and_another_disposition_block_a_proposal(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        kept, held, pending = stocked(store, shelf, 3)
        made = hold(store, document_ids=(held.id,))
        first = propose(store, [pending])
        with pytest.raises(NotDisposable) as refused:
            propose(store, [kept], at=BASE + timedelta(hours=1))
        assert refused.value.blocked == {kept.id: ["retention"]}
        with pytest.raises(NotDisposable) as refused:
            propose(store, [held, pending])
        assert refused.value.blocked == {
            held.id: [f"hold:{made.hold_id}"],
            pending.id: [f"disposition:{first.disposition_id}"],
        }
        with pytest.raises(DocumentNotFound):
            store.propose_disposition(Proposal((uuid4(),), "x"), actor=ADMIN,
                                      correlation_id=None, at=LATER)
        assert len(store.list_dispositions(status=None, limit=10, after=None)) == 1

    def test_approval_is_a_second_persons_and_steps_come_in_turn(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        docs = stocked(store, shelf)
        made = propose(store, docs)
        with pytest.raises(DispositionOutOfTurn):
            execute(store, made.disposition_id, shelf)
        with pytest.raises(Forbidden):
            approve(store, made.disposition_id, ADMIN)
        approve(store, made.disposition_id, OTHER_ADMIN)
        with pytest.raises(DispositionOutOfTurn):
            approve(store, made.disposition_id)
        execute(store, made.disposition_id, shelf)
        with pytest.raises(DispositionOutOfTurn):
            execute(store, made.disposition_id, shelf)
        assert shelf.destroyed == [docs[0].storage_key]

    def test_a_hold_placed_after_approval_stops_execution_with_nothing_destroyed(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        docs, made = approved(store, shelf, 2)
        placed = hold(store, entity_ids=(docs[1].entity_id,))
        with pytest.raises(NotDisposable) as refused:
            execute(store, made.disposition_id, shelf)
        assert refused.value.blocked == {docs[1].id: [f"hold:{placed.hold_id}"]}
        assert shelf.destroyed == [] and len(shelf.versions) == 2
        assert store.get_disposition(made.disposition_id).status is DispositionStatus.APPROVED
        assert {store.get_document(d.id).status for d in docs} == {DocumentStatus.UPLOADED}

    def test_a_version_the_storage_still_locks_is_storage_locked_with_nothing_destroyed(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        docs, made = approved(store, shelf, 2)
        shelf.put(docs[1], 1, ObjectLock("v0", LockMode.COMPLIANCE, LATER + timedelta(days=1),
                                         False))
        with pytest.raises(StorageLocked):
            execute(store, made.disposition_id, shelf)
        assert shelf.destroyed == []
        current = store.get_disposition(made.disposition_id)
        assert current.status is DispositionStatus.APPROVED
        assert [i.storage_versions for i in current.items] == [None, None]
        assert {store.get_document(d.id).status for d in docs} == {DocumentStatus.UPLOADED}

    def test_a_crash_after_some_bytes_went_is_finished_by_the_next_execution(
        self, store: MetadataStore
    ) -> None:
        shelf = Shelf()
        docs, made = approved(store, shelf, 2)
        planned = {d.storage_key: shelf.stored_versions(d.storage_key) for d in docs}

        def crash_on_second(key: str) -> None:
            if key == docs[1].storage_key:
                raise RuntimeError("process killed")

        shelf.on_destroy = crash_on_second
        with pytest.raises(RuntimeError):
            execute(store, made.disposition_id, shelf)
        assert shelf.destroyed == [docs[0].storage_key]  # its bytes are gone ...
        assert store.get_document(docs[0].id).status is DocumentStatus.UPLOADED  # ... not marked
        assert store.get_disposition(made.disposition_id).status is DispositionStatus.EXECUTING
        shelf.on_destroy = lambda key: None
        done = execute(store, made.disposition_id, shelf)
        assert done.status is DispositionStatus.EXECUTED
        for doc, item in zip(docs, done.items, strict=True):
            assert [v.version_id for v in item.storage_versions or ()] == [
                v.version_id for v in planned[doc.storage_key]]  # the plan kept what went first
            assert store.get_document(doc.id).status is DocumentStatus.DISPOSED
        assert [leaf.kind for leaf in leaves(store)].count(LeafKind.DISPOSED) == 2

    def test_a_tombstone_is_not_archived_nor_verified(self, store: MetadataStore) -> None:
        from vault.domain.errors import DocumentDisposed

        shelf = Shelf()
        (doc,), made = approved(store, shelf)
        execute(store, made.disposition_id, shelf)
        with pytest.raises(DocumentDisposed):
            store.archive_document(doc.id, archived_by=ADMIN.id, archived_at=LATER,
                                   events=lambda d: [])
        with pytest.raises(DocumentDisposed):
            store.record_verification(
                doc.id, status=DocumentStatus.MISMATCH, calculated_hash=None,
                verified_by=None, verified_at=LATER, events=lambda d: [],
                freeze_on_mismatch=True,
            )
        assert store.claim_sweep(LATER, LATER, 60, 10) == []
        assert store.integrity_coverage(LATER, timedelta(days=7)).documents == 0


class TestDatabaseRefusals:
    @pytest.mark.parametrize("statement", [
        "DELETE FROM dispositions",
        "DELETE FROM disposition_items",
        "UPDATE dispositions SET reason = 'rewritten'",
        "UPDATE disposition_items SET sha256_hash = 'rewritten'",
        "UPDATE documents SET status = 'uploaded'",
    ])
    def test_an_executed_disposition_and_its_tombstones_never_change(
        self, store_backend: StoreBackend, statement: str
    ) -> None:
        store, shelf = store_backend.open_store(), Shelf()
        _, made = approved(store, shelf)
        execute(store, made.disposition_id, shelf)
        with pytest.raises(store_backend.driver_error):
            store_backend.execute(statement, ())


class TestTwoStores:
    def test_each_step_may_run_in_another_process(self, store_backend: StoreBackend) -> None:
        one, other, shelf = store_backend.open_store(), store_backend.open_store(), Shelf()
        docs = stocked(one, shelf)
        made = propose(one, docs)
        approve(other, made.disposition_id)
        with pytest.raises(NotDisposable):  # the other sees this one's pending disposition
            propose(other, docs)
        execute(one, made.disposition_id, shelf)
        assert other.get_document(docs[0].id).status is DocumentStatus.DISPOSED
        assert other.get_disposition(made.disposition_id).status is DispositionStatus.EXECUTED

    @pytest.mark.parametrize("attempt", range(5))
    def test_a_hold_racing_an_execution_never_lands_before_destruction(
        self, pg_backend: StoreBackend, attempt: int
    ) -> None:
        one, other, shelf = pg_backend.open_store(), pg_backend.open_store(), Shelf()
        (doc,), made = approved(one, shelf)
        seen_at_destroy: list[list[UUID]] = []
        shelf.on_destroy = lambda key: seen_at_destroy.append(
            pg_backend.open_store().holds_of(doc.id, doc.entity_id))
        results = race(
            [lambda: execute(one, made.disposition_id, shelf),
             lambda: hold(other, document_ids=(doc.id,))],
            catching=(NotDisposable,),
        )
        if isinstance(results[0], NotDisposable):
            assert shelf.destroyed == [] and seen_at_destroy == []
            assert one.get_document(doc.id).status is DocumentStatus.UPLOADED
        else:
            assert seen_at_destroy == [[]]  # no hold committed while the bytes went
            assert one.get_document(doc.id).status is DocumentStatus.DISPOSED

    @pytest.mark.parametrize("attempt", range(3))
    def test_two_executions_of_one_disposition_finish_it_once(
        self, pg_backend: StoreBackend, attempt: int
    ) -> None:
        one, other, shelf = pg_backend.open_store(), pg_backend.open_store(), Shelf()
        docs, made = approved(one, shelf, 2)
        def guarded(store: MetadataStore) -> Callable[[], Any]:
            def run() -> Any:
                return execute(store, made.disposition_id, shelf)
            return run

        results = race([guarded(one), guarded(other)], catching=(DispositionOutOfTurn,))
        assert sorted(type(r).__name__ for r in results) == ["Disposition",
                                                             "DispositionOutOfTurn"]
        kinds = [leaf.kind for leaf in leaves(one)]
        assert kinds.count(LeafKind.DISPOSED) == 2
        assert {one.get_document(d.id).status for d in docs} == {DocumentStatus.DISPOSED}
