"""Retention policies, documents' retention and legal holds in the ``MetadataStore``, on
every backend in ``conftest`` (SQLite and PostgreSQL), with the database's own refusals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.vault.store_helpers import BASE, StoreBackend, make_document, race, upload
from vault.domain.errors import DocumentNotFound
from vault.domain.events import Destination
from vault.domain.holds import (
    HoldNotFound,
    HoldReleased,
    HoldStatus,
    ItemChange,
    ItemKind,
    NewHold,
)
from vault.domain.locks import LockMode, ObjectLock
from vault.domain.models import Actor, DocumentType, Role
from vault.domain.retention import (
    OnExpiry,
    Period,
    PolicyRequest,
    RetentionCannotShorten,
    RetentionMode,
)
from vault.ports import MetadataStore

ADMIN = Actor.user(uuid4(), Role.ADMIN)
OFFICER = Actor.user(uuid4(), Role.COMPLIANCE_OFFICER)
KYC = DocumentType.KYC


def at(days: int) -> datetime:
    return BASE + timedelta(days=days)


def policy(period: str, mode: RetentionMode = RetentionMode.COMPLIANCE) -> PolicyRequest:
    return PolicyRequest(Period.parse(period), mode, OnExpiry.REVIEW)


def put(store: MetadataStore, period: str, when: datetime = BASE, **kw: Any) -> Any:
    return store.put_retention_policy(KYC, policy(period, **kw), actor=ADMIN,
                                      correlation_id="req-r", at=when)


def audits(store: MetadataStore) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while rows := store.claim_outbox([Destination.AUDIT_EVENTS], 1000, BASE, 30):
        bodies.extend(dict(row.event.body) for row in rows)
        store.mark_delivered([row.id for row in rows], BASE)
    return bodies


def new_hold(document_ids: tuple[UUID, ...] = (), entity_ids: tuple[UUID, ...] = ()) -> NewHold:
    return NewHold(name="SEC inquiry 2026-14", matter="In re Token Co.", reason="subpoena",
                   custodian="legal@example.com", document_ids=document_ids,
                   entity_ids=entity_ids)


def hold(store: MetadataStore, **kw: Any) -> Any:
    return store.create_hold(new_hold(**kw), actor=OFFICER, correlation_id="req-h", at=BASE)


def change(store: MetadataStore, hold_id: UUID, *, add: bool, **ids: Any) -> Any:
    asked = ItemChange(document_ids=ids.get("document_ids", ()),
                       entity_ids=ids.get("entity_ids", ()), reason="scope changed")
    return store.change_hold_items(hold_id, asked, add=add, actor=OFFICER,
                                   correlation_id=None, at=at(1))


class TestPolicies:
    def test_versions_count_up_and_are_listed(self, store: MetadataStore) -> None:
        first, moved = put(store, "P6Y")
        assert (first.version, first.period.text(), moved) == (1, "P6Y", 0)
        second, _ = put(store, "P7Y", at(1))
        assert second.version == 2 and second.created_by == ADMIN.id
        assert [(p.version, p.period.text()) for p in store.retention_policies()] == [
            (1, "P6Y"), (2, "P7Y")
        ]

    def test_a_shorter_version_is_refused_and_nothing_is_written(
        self, store: MetadataStore
    ) -> None:
        put(store, "P6Y")
        with pytest.raises(RetentionCannotShorten):
            put(store, "P5Y", at(1))
        with pytest.raises(RetentionCannotShorten):
            put(store, "P6Y", at(1), mode=RetentionMode.GOVERNANCE)
        assert [p.version for p in store.retention_policies()] == [1]

    def test_setting_a_policy_is_audited(self, store: MetadataStore) -> None:
        audits(store)
        put(store, "P6Y")
        (event,) = [a for a in audits(store) if a["action"] == "retention.policy_set"]
        assert (event["entity_type"], event["entity_id"]) == ("retention_policy", "kyc")
        assert event["details"]["period"] == "P6Y" and event["details"]["version"] == 1
        assert event["actor_id"] == str(ADMIN.id)

    def test_racing_first_versions_make_one_version_one(self, store_backend: StoreBackend) -> None:
        stores = [store_backend.open_store() for _ in range(2)]
        results = race([lambda s=s: put(s, "P6Y") for s in stores],  # type: ignore[misc]
                       catching=(RetentionCannotShorten,))
        versions = sorted(r[0].version for r in results if not isinstance(r, Exception))
        assert versions == [1, 2]


class TestDocumentRetention:
    def test_a_document_uploaded_after_a_policy_records_it(self, store: MetadataStore) -> None:
        put(store, "P6Y")
        doc = upload(store, make_document(document_type=KYC, created_at=at(10)))
        held = store.document_retention(doc.id)
        assert held is not None
        assert (held.policy_version, held.mode) == (1, RetentionMode.COMPLIANCE)
        assert held.retain_until == at(10).replace(year=at(10).year + 6)

    def test_a_document_of_another_type_or_before_any_policy_has_none(
        self, store: MetadataStore
    ) -> None:
        before = upload(store, make_document(document_type=KYC))
        put(store, "P6Y")
        other = upload(store, make_document(document_type=DocumentType.AUDIT_REPORT))
        assert store.document_retention(before.id) is None
        assert store.document_retention(other.id) is None

    def test_a_longer_version_lengthens_existing_documents(self, store: MetadataStore) -> None:
        put(store, "P6Y")
        docs = [upload(store, make_document(document_type=KYC, created_at=at(i)))
                for i in range(3)]
        _, moved = put(store, "P7Y", at(5))
        assert moved == 3
        for i, doc in enumerate(docs):
            held = store.document_retention(doc.id)
            assert held is not None and held.policy_version == 2
            assert held.retain_until == at(i).replace(year=at(i).year + 7)

    def test_equal_length_moves_nothing(self, store: MetadataStore) -> None:
        put(store, "P6Y")
        upload(store, make_document(document_type=KYC))
        assert put(store, "P72M", at(1))[1] == 0


class TestHolds:
    def test_create_with_items_and_read_back(self, store: MetadataStore) -> None:
        doc = upload(store, make_document())
        entity = uuid4()
        made = hold(store, document_ids=(doc.id,), entity_ids=(entity,))
        assert made.status is HoldStatus.ACTIVE and made.created_by == OFFICER.id
        assert store.get_hold(made.hold_id) == made
        assert [(i.kind.value, i.target_id) for i in made.items] == [
            ("document", doc.id), ("entity", entity)
        ]

    def test_an_unknown_document_is_refused_and_nothing_is_made(
        self, store: MetadataStore
    ) -> None:
        with pytest.raises(DocumentNotFound):
            hold(store, document_ids=(uuid4(),))
        assert store.list_holds(status=None, limit=10, after=None) == []

    def test_a_document_is_held_by_id_or_by_its_entity_later_uploads_too(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document())
        by_id = hold(store, document_ids=(doc.id,))
        by_entity = hold(store, entity_ids=(doc.entity_id,))
        later = upload(store, make_document(entity_id=doc.entity_id))
        assert set(store.holds_of(doc.id, doc.entity_id)) == {by_id.hold_id, by_entity.hold_id}
        assert store.holds_of(later.id, later.entity_id) == [by_entity.hold_id]

    def test_two_holds_release_one_still_held_release_both_free(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document())
        first, second = (hold(store, document_ids=(doc.id,)) for _ in range(2))
        store.release_hold(first.hold_id, reason="settled", actor=OFFICER,
                           correlation_id=None, at=at(1))
        assert store.holds_of(doc.id, doc.entity_id) == [second.hold_id]
        store.release_hold(second.hold_id, reason="closed", actor=OFFICER,
                           correlation_id=None, at=at(2))
        assert store.holds_of(doc.id, doc.entity_id) == []
        released = store.get_hold(first.hold_id)
        assert (released.status, released.release_reason, released.released_by) == (
            HoldStatus.RELEASED, "settled", OFFICER.id
        )

    def test_items_removed_keep_their_history_and_readding_makes_a_new_item(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document())
        made = hold(store, document_ids=(doc.id,))
        change(store, made.hold_id, add=True, document_ids=(doc.id,))  # covered already
        removed = change(store, made.hold_id, add=False, document_ids=(doc.id,))
        assert store.holds_of(doc.id, doc.entity_id) == []
        (item,) = removed.items
        assert (item.removed_by, item.removed_reason) == (OFFICER.id, "scope changed")
        again = change(store, made.hold_id, add=True, document_ids=(doc.id,))
        assert [i.active for i in again.items] == [False, True]
        assert store.holds_of(doc.id, doc.entity_id) == [made.hold_id]

    def test_a_released_hold_changes_no_more(self, store: MetadataStore) -> None:
        made = hold(store)
        store.release_hold(made.hold_id, reason="done", actor=OFFICER, correlation_id=None,
                           at=at(1))
        with pytest.raises(HoldReleased):
            change(store, made.hold_id, add=True, entity_ids=(uuid4(),))
        with pytest.raises(HoldReleased):
            store.release_hold(made.hold_id, reason="again", actor=OFFICER,
                               correlation_id=None, at=at(2))

    def test_unknown_hold(self, store: MetadataStore) -> None:
        with pytest.raises(HoldNotFound):
            store.get_hold(uuid4())
        with pytest.raises(HoldNotFound):
            change(store, uuid4(), add=True, entity_ids=(uuid4(),))

    def test_listing_filters_and_pages_newest_first(self, store: MetadataStore) -> None:
        made = [store.create_hold(new_hold(), actor=OFFICER, correlation_id=None, at=at(i))
                for i in range(3)]
        store.release_hold(made[0].hold_id, reason="done", actor=OFFICER, correlation_id=None,
                           at=at(5))
        assert [h.hold_id for h in store.list_holds(status=None, limit=10, after=None)] == [
            h.hold_id for h in reversed(made)
        ]
        active = store.list_holds(status=HoldStatus.ACTIVE, limit=10, after=None)
        assert [h.hold_id for h in active] == [made[2].hold_id, made[1].hold_id]

    def test_every_change_is_audited(self, store: MetadataStore) -> None:
        audits(store)
        made = hold(store, entity_ids=(uuid4(),))
        change(store, made.hold_id, add=False, entity_ids=tuple(made.covered(ItemKind.ENTITY)))
        store.release_hold(made.hold_id, reason="done", actor=OFFICER, correlation_id=None,
                           at=at(2))
        actions = [(a["action"], a["entity_type"], a["entity_id"]) for a in audits(store)]
        assert [a[0] for a in actions] == [
            "legal_hold.created", "legal_hold.items_removed", "legal_hold.released"
        ]
        assert {a[1] for a in actions} == {"legal_hold"}
        assert {a[2] for a in actions} == {str(made.hold_id)}


class TestTheDatabaseRefuses:
    def test_deleting_a_retained_document_row(self, store_backend: StoreBackend) -> None:
        store = store_backend.open_store()
        store.put_retention_policy(KYC, policy("P6Y"), actor=ADMIN, correlation_id=None,
                                   at=datetime.now(BASE.tzinfo))
        doc = upload(store, make_document(document_type=KYC, created_at=datetime.now(BASE.tzinfo)))
        with pytest.raises(store_backend.driver_error):
            store_backend.execute("DELETE FROM documents WHERE id = ?", [str(doc.id)])
        assert store.get_document(doc.id).id == doc.id

    def test_deleting_a_held_document_row(self, store_backend: StoreBackend) -> None:
        store = store_backend.open_store()
        doc = upload(store, make_document())
        hold(store, entity_ids=(doc.entity_id,))
        with pytest.raises(store_backend.driver_error):
            store_backend.execute("DELETE FROM documents WHERE id = ?", [str(doc.id)])

    @pytest.mark.parametrize("table", ["retention_policies", "legal_holds", "legal_hold_items"])
    def test_deleting_records_of_the_records(
        self, store_backend: StoreBackend, table: str
    ) -> None:
        store = store_backend.open_store()
        put(store, "P6Y")
        hold(store, entity_ids=(uuid4(),))
        with pytest.raises(store_backend.driver_error):
            store_backend.execute(f"DELETE FROM {table}", [])

    def test_moving_retain_until_earlier(self, store_backend: StoreBackend) -> None:
        store = store_backend.open_store()
        put(store, "P6Y")
        doc = upload(store, make_document(document_type=KYC))
        with pytest.raises(store_backend.driver_error):
            store_backend.execute(
                "UPDATE document_retention SET retain_until = ? WHERE document_id = ?",
                [BASE.isoformat(timespec="microseconds"), str(doc.id)],
            )


class TestLockQueue:
    def test_an_upload_under_a_policy_is_queued_with_its_retention(
        self, store: MetadataStore
    ) -> None:
        put(store, "P6Y")
        doc = upload(store, make_document(document_type=KYC))
        (task,) = store.storage_lock_due(10)
        assert (task.document_id, task.storage_key, task.legal_hold) == (
            doc.id, doc.storage_key, False
        )
        assert task.retention is not None and task.retention.mode is LockMode.COMPLIANCE
        held = store.document_retention(doc.id)
        assert held is not None and task.retention.retain_until == held.retain_until

    def test_an_upload_under_no_policy_into_no_hold_is_not_queued(
        self, store: MetadataStore
    ) -> None:
        upload(store, make_document())
        assert store.storage_lock_due(10) == []

    def test_applied_leaves_the_queue_unless_queued_again_meanwhile(
        self, store: MetadataStore
    ) -> None:
        put(store, "P6Y")
        doc = upload(store, make_document(document_type=KYC))
        (task,) = store.storage_lock_due(10)
        hold(store, document_ids=(doc.id,))  # queued again while "applying"
        assert not store.storage_lock_applied(task, ObjectLock.unlocked(), at(1))
        (again,) = store.storage_lock_due(10)
        assert again.legal_hold and again.token != task.token
        assert store.storage_lock_applied(again, ObjectLock.unlocked(), at(2))
        assert store.storage_lock_due(10) == []
        assert store.storage_lock_backlog() == (0, None)

    def test_holds_queue_what_they_cover_and_a_release_queues_it_unheld(
        self, store: MetadataStore
    ) -> None:
        entity = uuid4()
        docs = [upload(store, make_document(entity_id=entity)) for _ in range(2)]
        made = hold(store, entity_ids=(entity,))
        due = store.storage_lock_due(10)
        assert {t.document_id for t in due} == {d.id for d in docs}
        assert all(t.legal_hold and t.retention is None for t in due)
        for task in due:
            store.storage_lock_applied(task, ObjectLock.unlocked(), at(1))
        store.release_hold(made.hold_id, reason="done", actor=OFFICER, correlation_id=None,
                           at=at(2))
        released = store.storage_lock_due(10)
        assert {t.document_id for t in released} == {d.id for d in docs}
        assert not any(t.legal_hold for t in released)
        assert store.storage_lock_backlog()[0] == 2


class TestTwoStoresOnOneDatabase:
    def test_a_hold_placed_through_one_is_seen_by_the_other(
        self, store_backend: StoreBackend
    ) -> None:
        one, other = store_backend.open_store(), store_backend.open_store()
        doc = upload(one, make_document())
        made = hold(one, entity_ids=(doc.entity_id,))
        assert other.holds_of(doc.id, doc.entity_id) == [made.hold_id]
        other.release_hold(made.hold_id, reason="done", actor=OFFICER, correlation_id=None,
                           at=at(1))
        assert one.holds_of(doc.id, doc.entity_id) == []

    @pytest.mark.parametrize("attempt", range(5))
    def test_an_item_change_racing_a_release_never_lands_on_a_released_hold(
        self, pg_backend: StoreBackend, attempt: int
    ) -> None:
        one, other = pg_backend.open_store(), pg_backend.open_store()
        made = hold(one)
        entity = uuid4()
        results = race(
            [
                lambda: one.release_hold(made.hold_id, reason="done", actor=OFFICER,
                                         correlation_id=None, at=at(1)),
                lambda: change(other, made.hold_id, add=True, entity_ids=(entity,)),
            ],
            catching=(HoldReleased,),
        )
        final = one.get_hold(made.hold_id)
        assert final.status is HoldStatus.RELEASED
        added = [i for i in final.items if i.target_id == entity]
        if isinstance(results[1], HoldReleased):
            assert added == []  # the release came first
        else:
            assert [i.added_at for i in added] == [at(1)]  # the change came first
