"""Incident notifications written by the ``MetadataStore``, on every backend in ``conftest``.

Each change an on-call person must hear of writes one row for the
``incident_notifications`` destination in the transaction that makes it:
an incident opened, grown (a new document) or resolved, an entity frozen
or unfrozen. A document found tampered again writes none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from tests.vault.store_helpers import BASE, make_document, upload
from vault.domain.events import Destination
from vault.domain.models import Actor, Document, DocumentStatus, Role, iso_event
from vault.ports import MetadataStore

BAD_HASH = "e" * 64
OFFICER = Actor.user(uuid4(), Role.COMPLIANCE_OFFICER)


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def mismatch(store: MetadataStore, doc: Document, when: datetime, *, freeze: bool = True) -> None:
    store.record_verification(
        doc.id, status=DocumentStatus.MISMATCH, calculated_hash=BAD_HASH, verified_by=None,
        verified_at=when, events=lambda _: [], freeze_on_mismatch=freeze,
    )


def notifications(store: MetadataStore) -> list[dict[str, Any]]:
    """Every notification not yet read, oldest first (each marked delivered once read)."""
    bodies: list[dict[str, Any]] = []
    while rows := store.claim_outbox([Destination.INCIDENT_NOTIFICATIONS], 1000, BASE, 30):
        bodies.extend(dict(row.event.body) for row in rows)
        store.mark_delivered([row.id for row in rows], BASE)
    return bodies


def kinds(store: MetadataStore) -> list[str]:
    return [body["event_type"] for body in notifications(store)]


def incident_of(store: MetadataStore, entity_id: UUID) -> UUID:
    (found,) = store.list_incidents(entity_id=entity_id, status=None, limit=10, after=None)
    return found.incident_id


class TestIncidents:
    def test_a_first_mismatch_notifies_the_incident_and_the_freeze(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document(filename="deed <!channel>.pdf"))
        mismatch(store, doc, at(1))
        opened, frozen = notifications(store)
        incident_id = str(incident_of(store, doc.entity_id))
        assert opened["event_type"] == "incident.opened"
        assert opened["incident_id"] == incident_id
        assert opened["entity_id"] == str(doc.entity_id)
        assert opened["entity_type"] == doc.entity_type.value
        assert opened["status"] == "open" and opened["documents"] == 1
        assert opened["document"] == {
            "document_id": str(doc.id), "filename": "deed <!channel>.pdf",
            "expected_hash": doc.sha256_hash, "calculated_hash": BAD_HASH,
            "detected_at": iso_event(at(1)),
        }
        assert "deed &lt;!channel&gt;.pdf" in opened["text"]
        assert incident_id in opened["text"]
        assert frozen["event_type"] == "entity.frozen"
        assert frozen["incident_id"] == incident_id and frozen["by"] is None
        assert frozen["reason"] == "integrity mismatch"

    def test_without_freeze_on_mismatch_only_the_incident_is_notified(
        self, store: MetadataStore
    ) -> None:
        mismatch(store, upload(store, make_document()), at(1), freeze=False)
        assert kinds(store) == ["incident.opened"]

    def test_a_new_document_grows_it_and_a_known_one_is_quiet(
        self, store: MetadataStore
    ) -> None:
        entity = uuid4()
        first, second = (upload(store, make_document(entity_id=entity)) for _ in range(2))
        mismatch(store, first, at(1))
        notifications(store)
        mismatch(store, first, at(2))  # the sweep finding it again
        assert kinds(store) == []
        mismatch(store, second, at(3))
        (grown,) = notifications(store)
        assert grown["event_type"] == "incident.grown"
        assert grown["documents"] == 2
        assert grown["document"]["document_id"] == str(second.id)
        assert grown["incident_id"] == str(incident_of(store, entity))

    def test_resolving_notifies_and_the_next_mismatch_opens_again(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document())
        mismatch(store, doc, at(1), freeze=False)
        notifications(store)
        incident_id = incident_of(store, doc.entity_id)
        by = uuid4()
        store.resolve_incident(incident_id, resolved_by=by, resolution="restored <b>", at=at(2))
        (resolved,) = notifications(store)
        assert resolved["event_type"] == "incident.resolved"
        assert resolved["status"] == "resolved" and resolved["documents"] == 1
        assert resolved["resolved_by"] == str(by)
        assert resolved["resolution"] == "restored <b>"
        assert "restored &lt;b&gt;" in resolved["text"]
        mismatch(store, doc, at(3), freeze=False)
        assert kinds(store) == ["incident.opened"]


class TestFreezes:
    def test_freeze_and_unfreeze_by_hand_are_notified(self, store: MetadataStore) -> None:
        entity = uuid4()
        store.set_freeze(entity, frozen=True, actor=OFFICER, reason="court order",
                         correlation_id=None, at=at(1))
        store.set_freeze(entity, frozen=True, actor=OFFICER, reason="again",
                         correlation_id=None, at=at(2))  # no change: nothing to say
        store.set_freeze(entity, frozen=False, actor=OFFICER, reason="order lifted",
                         correlation_id=None, at=at(3))
        frozen, unfrozen = notifications(store)
        assert (frozen["event_type"], frozen["frozen"], frozen["reason"]) == (
            "entity.frozen", True, "court order"
        )
        assert frozen["by"] == str(OFFICER.id) and str(OFFICER.id) in frozen["text"]
        assert (unfrozen["event_type"], unfrozen["frozen"], unfrozen["reason"]) == (
            "entity.unfrozen", False, "order lifted"
        )

    def test_unfreezing_a_mismatch_freeze_names_its_incident(
        self, store: MetadataStore
    ) -> None:
        doc = upload(store, make_document())
        mismatch(store, doc, at(1))
        notifications(store)
        store.set_freeze(doc.entity_id, frozen=False, actor=OFFICER, reason="checked",
                         correlation_id=None, at=at(2))
        (unfrozen,) = notifications(store)
        assert unfrozen["incident_id"] == str(incident_of(store, doc.entity_id))


def test_one_entitys_notifications_keep_their_order(store: MetadataStore) -> None:
    """They share the entity as their group: the second waits while the first is undelivered."""
    doc = upload(store, make_document())
    mismatch(store, doc, at(1))
    first = store.claim_outbox([Destination.INCIDENT_NOTIFICATIONS], 10, BASE, 30)
    assert [r.event.body["event_type"] for r in first] == ["incident.opened"]
    assert store.claim_outbox([Destination.INCIDENT_NOTIFICATIONS], 10, BASE, 30) == []
    store.mark_delivered([first[0].id], BASE)
    assert kinds(store) == ["entity.frozen"]
