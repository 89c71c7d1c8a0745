"""Integrity incidents in the ``MetadataStore``, run against every backend in ``conftest``.

A mismatch recorded by ``record_verification`` opens its entity's incident
or joins the open one, in the same transaction as its integrity alert
(which carries the incident's id); ``resolve_incident`` closes it for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.vault.store_helpers import BASE, StoreBackend, make_document, race, upload
from vault.adapters.stores import incidents as incidents_module
from vault.adapters.stores.rows import as_uuid as real_as_uuid
from vault.domain.events import Destination, OutboxEvent, verification_events
from vault.domain.incidents import (
    Incident,
    IncidentDocument,
    IncidentNotFound,
    IncidentResolved,
    IncidentStatus,
)
from vault.domain.models import Actor, Document, DocumentStatus, EntityType, Role
from vault.ports import MetadataStore, PageCursor

VERIFIER = Actor.user(uuid4(), Role.AUDITOR)
BAD_HASH = "f" * 64


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def events_for(
    doc: Document, intact: bool, calculated: str | None, when: datetime
) -> Callable[[Document], list[OutboxEvent]]:
    """What the verifier announces (built from the row before the change, as it does)."""
    return lambda _: verification_events(doc, intact, calculated, VERIFIER, "req-1", when)


def mismatch(
    store: MetadataStore, doc: Document, when: datetime, calculated: str | None = BAD_HASH
) -> Document:
    return store.record_verification(
        doc.id, status=DocumentStatus.MISMATCH, calculated_hash=calculated,
        verified_by=VERIFIER.id, verified_at=when, events=events_for(doc, False, calculated, when),
    )


def intact(store: MetadataStore, doc: Document, when: datetime) -> Document:
    return store.record_verification(
        doc.id, status=DocumentStatus.VERIFIED, calculated_hash=doc.sha256_hash,
        verified_by=VERIFIER.id, verified_at=when,
        events=events_for(doc, True, doc.sha256_hash, when),
    )


def listed(store: MetadataStore, **query: Any) -> list[Incident]:
    options: dict[str, Any] = {"entity_id": None, "status": None, "limit": 1000, "after": None}
    options.update(query)
    return store.list_incidents(**options)


def only_incident(store: MetadataStore, entity_id: UUID, **query: Any) -> Incident:
    (found,) = listed(store, entity_id=entity_id, **query)
    assert store.get_incident(found.incident_id) == found
    return found


def alerts(store: MetadataStore) -> list[dict[str, Any]]:
    """Every integrity alert in the outbox, oldest first (each delivered once read: a
    document's later alert waits behind its earlier one)."""
    bodies: list[dict[str, Any]] = []
    while rows := store.claim_outbox([Destination.INTEGRITY_ALERTS], 1000, BASE, 30):
        bodies.extend(dict(row.event.body) for row in rows)
        store.mark_delivered([row.id for row in rows], BASE)
    return bodies


def uploaded(store: MetadataStore, entity_id: UUID, count: int, **changes: Any) -> list[Document]:
    return [upload(store, make_document(entity_id=entity_id, **changes)) for _ in range(count)]


def resolve(store: MetadataStore, incident_id: UUID, when: datetime, **kw: Any) -> Incident:
    options: dict[str, Any] = {"resolved_by": uuid4(), "resolution": "restored from backup"}
    options.update(kw)
    return store.resolve_incident(incident_id, at=when, **options)


class TestOpening:
    def test_first_mismatch_opens_an_incident(self, store: MetadataStore) -> None:
        """An entity's first mismatch opens an incident: open, opened and last detected at
        the verification's time, with the document's expected and calculated hash."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1, filename="prospectus (v2).pdf",
                          entity_type=EntityType.COMPLIANCE)

        mismatch(store, doc, at(5))

        found = only_incident(store, entity)
        assert found == Incident(
            incident_id=found.incident_id, entity_id=entity, entity_type=EntityType.COMPLIANCE,
            status=IncidentStatus.OPEN, opened_at=at(5), last_detected_at=at(5),
            documents=(
                IncidentDocument(
                    document_id=doc.id, filename="prospectus (v2).pdf",
                    expected_hash=doc.sha256_hash, calculated_hash=BAD_HASH, detected_at=at(5),
                ),
            ),
        )
        assert isinstance(found.incident_id, UUID)
        assert type(found.status) is IncidentStatus
        assert (found.resolved_at, found.resolved_by, found.resolution) == (None, None, None)

    def test_unreadable_blob_keeps_a_null_calculated_hash(self, store: MetadataStore) -> None:
        """A mismatch without a calculated hash (bytes unreadable) is listed with None."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)

        mismatch(store, doc, at(1), calculated=None)

        (document,) = only_incident(store, entity).documents
        assert document.calculated_hash is None

    def test_second_document_joins_the_open_incident(self, store: MetadataStore) -> None:
        """Another document of the entity joins the open incident; last_detected_at moves."""
        entity = uuid4()
        first, second = uploaded(store, entity, 2)
        mismatch(store, first, at(1))
        opened = only_incident(store, entity)

        mismatch(store, second, at(7), calculated="e" * 64)

        joined = only_incident(store, entity)
        assert joined.incident_id == opened.incident_id
        assert (joined.opened_at, joined.last_detected_at) == (at(1), at(7))
        assert {d.document_id: (d.calculated_hash, d.detected_at) for d in joined.documents} == {
            first.id: (BAD_HASH, at(1)),
            second.id: ("e" * 64, at(7)),
        }

    def test_same_document_again_updates_its_detection(self, store: MetadataStore) -> None:
        """The same document found again keeps one row, with its latest detection."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)
        mismatch(store, doc, at(1))

        mismatch(store, doc, at(9), calculated="d" * 64)

        found = only_incident(store, entity)
        assert (found.opened_at, found.last_detected_at) == (at(1), at(9))
        (document,) = found.documents
        assert (document.document_id, document.expected_hash) == (doc.id, doc.sha256_hash)
        assert (document.calculated_hash, document.detected_at) == ("d" * 64, at(9))

    def test_another_entity_gets_its_own_incident(self, store: MetadataStore) -> None:
        """Mismatches of two entities open two incidents, each with its own document."""
        one, other = uuid4(), uuid4()
        (doc_one,) = uploaded(store, one, 1)
        (doc_other,) = uploaded(store, other, 1)

        mismatch(store, doc_one, at(1))
        mismatch(store, doc_other, at(2))

        first, second = only_incident(store, one), only_incident(store, other)
        assert first.incident_id != second.incident_id
        assert [d.document_id for d in first.documents] == [doc_one.id]
        assert [d.document_id for d in second.documents] == [doc_other.id]
        assert second.status is IncidentStatus.OPEN

    def test_intact_verification_opens_nothing(self, store: MetadataStore) -> None:
        """A verification that finds the bytes intact opens no incident and no alert."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)

        intact(store, doc, at(1))

        assert listed(store) == []
        assert alerts(store) == []

    def test_intact_verification_leaves_the_open_incident_alone(
        self, store: MetadataStore
    ) -> None:
        """An intact verification of another document changes nothing in the open incident."""
        entity = uuid4()
        bad, good = uploaded(store, entity, 2)
        mismatch(store, bad, at(1))
        before = only_incident(store, entity)

        intact(store, good, at(5))

        assert only_incident(store, entity) == before

    def test_archived_document_mismatch_still_counts(self, store: MetadataStore) -> None:
        """A mismatch found on an archived document opens its entity's incident as well."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)
        store.archive_document(doc.id, archived_by=None, archived_at=at(1), events=lambda _: [])

        mismatch(store, doc, at(2))

        assert [d.document_id for d in only_incident(store, entity).documents] == [doc.id]


class TestAlerts:
    def test_alert_carries_the_incident_id(self, store: MetadataStore) -> None:
        """The integrity alert written with the mismatch names the incident it joined."""
        entity = uuid4()
        first, second = uploaded(store, entity, 2)
        (other,) = uploaded(store, uuid4(), 1)

        mismatch(store, first, at(1))
        mismatch(store, second, at(2))
        mismatch(store, other, at(3))

        ours = only_incident(store, entity).incident_id
        theirs = only_incident(store, other.entity_id).incident_id
        sent = alerts(store)
        assert [(a["document_id"], a["incident_id"]) for a in sent] == [
            (str(first.id), str(ours)),
            (str(second.id), str(ours)),
            (str(other.id), str(theirs)),
        ]
        assert all(a["alert_type"] == "integrity_violation" for a in sent)

    def test_only_the_alert_carries_it(self, store: MetadataStore) -> None:
        """The mismatch's document and audit events are written without an incident id."""
        (doc,) = uploaded(store, uuid4(), 1)

        mismatch(store, doc, at(1))

        rows = store.claim_outbox(
            [Destination.DOCUMENT_EVENTS, Destination.AUDIT_EVENTS], 100, BASE, 30
        )
        assert rows
        assert all("incident_id" not in row.event.body for row in rows)

    def test_failed_event_builder_opens_no_incident(self, store: MetadataStore) -> None:
        """A mismatch whose events cannot be built leaves no incident behind."""
        (doc,) = uploaded(store, uuid4(), 1)

        def failing(_: Document) -> list[OutboxEvent]:
            raise RuntimeError("event builder failed")

        with pytest.raises(RuntimeError, match="event builder failed"):
            store.record_verification(
                doc.id, status=DocumentStatus.MISMATCH, calculated_hash=BAD_HASH,
                verified_by=None, verified_at=at(1), events=failing,
            )

        assert listed(store) == []
        assert store.get_document(doc.id).status is DocumentStatus.UPLOADED


class TestResolving:
    def test_resolve_closes_the_incident(self, store: MetadataStore) -> None:
        """Resolving sets status resolved, resolved_at, resolved_by and the resolution."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)
        mismatch(store, doc, at(1))
        opened = only_incident(store, entity)
        officer = uuid4()

        resolved = resolve(store, opened.incident_id, at(30), resolved_by=officer,
                           resolution="Blob restored from the WORM copy; hashes match ☃")

        assert resolved.status is IncidentStatus.RESOLVED
        assert resolved.resolved_at == at(30)
        assert resolved.resolved_by == officer
        assert resolved.resolution == "Blob restored from the WORM copy; hashes match ☃"
        assert (resolved.documents, resolved.opened_at) == (opened.documents, opened.opened_at)
        assert store.get_incident(opened.incident_id) == resolved

    def test_resolving_twice_is_refused(self, store: MetadataStore) -> None:
        """A resolved incident cannot be resolved again, and keeps its first resolution."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)
        mismatch(store, doc, at(1))
        incident_id = only_incident(store, entity).incident_id
        first = resolve(store, incident_id, at(2))

        with pytest.raises(IncidentResolved) as caught:
            resolve(store, incident_id, at(3), resolution="again")

        assert (caught.value.status, caught.value.error_code) == (409, "INCIDENT_ALREADY_RESOLVED")
        assert store.get_incident(incident_id) == first

    def test_unknown_incident_is_not_found(self, store: MetadataStore) -> None:
        """Reading or resolving an id that names no incident raises IncidentNotFound."""
        with pytest.raises(IncidentNotFound) as caught:
            store.get_incident(uuid4())
        assert (caught.value.status, caught.value.error_code) == (404, "INCIDENT_NOT_FOUND")
        with pytest.raises(IncidentNotFound):
            resolve(store, uuid4(), at(1))

    def test_next_mismatch_after_resolve_opens_a_new_incident(
        self, store: MetadataStore
    ) -> None:
        """After a resolution the entity's next mismatch opens a new incident, and the
        resolved one keeps what it had."""
        entity = uuid4()
        first, second = uploaded(store, entity, 2)
        mismatch(store, first, at(1))
        old = only_incident(store, entity)
        resolved = resolve(store, old.incident_id, at(2))

        mismatch(store, second, at(3))
        mismatch(store, first, at(4))

        new = only_incident(store, entity, status=IncidentStatus.OPEN)
        assert new.incident_id != old.incident_id
        assert (new.opened_at, new.last_detected_at) == (at(3), at(4))
        assert {d.document_id for d in new.documents} == {first.id, second.id}
        assert store.get_incident(old.incident_id) == resolved
        assert [a["incident_id"] for a in alerts(store)] == [
            str(old.incident_id), str(new.incident_id), str(new.incident_id)
        ]


class TestListing:
    def test_filters_by_entity_and_status(self, store: MetadataStore) -> None:
        """entity_id and status each narrow the list, and together too."""
        one, other = uuid4(), uuid4()
        (a,) = uploaded(store, one, 1)
        (b,) = uploaded(store, other, 1)
        mismatch(store, a, at(1))
        closed = resolve(store, only_incident(store, one).incident_id, at(2))
        mismatch(store, a, at(3))
        mismatch(store, b, at(4))
        reopened = only_incident(store, one, status=IncidentStatus.OPEN)
        theirs = only_incident(store, other)

        def ids(**query: Any) -> list[UUID]:
            return [i.incident_id for i in listed(store, **query)]

        assert ids() == [theirs.incident_id, reopened.incident_id, closed.incident_id]
        assert ids(entity_id=one) == [reopened.incident_id, closed.incident_id]
        assert ids(status=IncidentStatus.OPEN) == [theirs.incident_id, reopened.incident_id]
        assert ids(status=IncidentStatus.RESOLVED) == [closed.incident_id]
        assert ids(entity_id=other, status=IncidentStatus.RESOLVED) == []
        assert ids(entity_id=uuid4()) == []

    @pytest.mark.parametrize("same_instant", [False, True], ids=["distinct", "same-instant"])
    def test_pages_cover_every_incident_once_newest_first(
        self, store: MetadataStore, same_instant: bool
    ) -> None:
        """Paging with the last incident's (opened_at, incident_id) visits every incident
        once, newest opened first, also when several were opened at the same instant."""
        opened: list[tuple[datetime, UUID]] = []
        for i in range(23):
            (doc,) = uploaded(store, uuid4(), 1)
            when = at(i // 4 if same_instant else i)
            mismatch(store, doc, when)
            opened.append((when, only_incident(store, doc.entity_id).incident_id))
        expected = [incident_id for _, incident_id in sorted(opened, reverse=True)]

        pages: list[list[Incident]] = []
        after: PageCursor | None = None
        while True:
            page = listed(store, limit=5, after=after)
            if not page:
                break
            assert len(page) <= 5
            pages.append(page)
            after = PageCursor(created_at=page[-1].opened_at, document_id=page[-1].incident_id)

        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        assert [i.incident_id for p in pages for i in p] == expected

    def test_cursor_pages_within_a_filter(self, store: MetadataStore) -> None:
        """The cursor keeps the filter: paging one entity's incidents names only them."""
        entity = uuid4()
        (doc,) = uploaded(store, entity, 1)
        own: list[UUID] = []
        for i in range(5):
            mismatch(store, doc, at(10 * i))
            own.append(only_incident(store, entity, status=IncidentStatus.OPEN).incident_id)
            resolve(store, own[-1], at(10 * i + 1))
            (stranger,) = uploaded(store, uuid4(), 1)
            mismatch(store, stranger, at(10 * i + 2))

        first = listed(store, entity_id=entity, limit=3)
        cursor = PageCursor(created_at=first[-1].opened_at, document_id=first[-1].incident_id)
        rest = listed(store, entity_id=entity, limit=3, after=cursor)

        assert [i.incident_id for i in first + rest] == own[::-1]

    def test_documents_come_with_each_listed_incident(self, store: MetadataStore) -> None:
        """A listed incident carries its documents, as get_incident gives them."""
        entity = uuid4()
        docs = uploaded(store, entity, 3)
        for i, doc in enumerate(docs):
            mismatch(store, doc, at(i))

        (found,) = listed(store, entity_id=entity)

        assert {d.document_id for d in found.documents} == {d.id for d in docs}
        assert found == store.get_incident(found.incident_id)


class TestConcurrency:
    def test_racing_mismatches_of_one_entity_share_one_incident(
        self, store_backend: StoreBackend
    ) -> None:
        """Eight threads (on two stores, as two processes) recording mismatches of one
        entity's documents at once end with one open incident holding all eight."""
        stores = [store_backend.open_store(), store_backend.open_store()]
        entity = uuid4()
        docs = uploaded(stores[0], entity, 8)

        outcomes = race([
            partial(mismatch, stores[i % 2], doc, at(1))
            for i, doc in enumerate(docs)
        ])

        assert all(o.status is DocumentStatus.MISMATCH for o in outcomes if isinstance(o, Document))
        assert len(outcomes) == 8
        (found,) = listed(stores[1], entity_id=entity)
        assert found.status is IncidentStatus.OPEN
        assert {d.document_id for d in found.documents} == {d.id for d in docs}
        assert {a["incident_id"] for a in alerts(stores[1])} == {str(found.incident_id)}


@pytest.fixture
def resolve_after_join_reads(
    monkeypatch: pytest.MonkeyPatch, pg_backend: StoreBackend
) -> Iterator[list[Future[Incident]]]:
    """Once armed (by appending anything to the list it yields), the next ``join_incident``
    has another store start resolving the open incident it has just read (and locked),
    while it goes on: the interleaving two processes can produce. The resolution's
    future is appended."""
    other = pg_backend.open_store()
    armed: list[Any] = []
    fired = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)

    def as_uuid(value: object) -> UUID:
        incident_id = real_as_uuid(value)
        if armed and not fired.is_set():
            fired.set()
            armed.append(pool.submit(resolve, other, incident_id, at(2)))
        return incident_id

    monkeypatch.setattr(incidents_module, "as_uuid", as_uuid)
    try:
        yield armed
    finally:
        pool.shutdown(wait=True)
    assert fired.is_set()


class TestResolveRace:
    def test_mismatch_racing_a_resolution_never_joins_the_resolved_incident(
        self, pg_backend: StoreBackend, resolve_after_join_reads: list[Any]
    ) -> None:
        """A resolution asked for while a mismatch of the same entity is being recorded
        waits for it (the mismatch holds the open incident's row): it resolves the incident
        with that mismatch in it, and never a detection lands in a resolved incident."""
        store = pg_backend.open_store()
        entity = uuid4()
        first, second = uploaded(store, entity, 2)
        mismatch(store, first, at(1))
        old = only_incident(store, entity).incident_id
        resolve_after_join_reads.append("arm")

        mismatch(store, second, at(3))

        resolved = resolve_after_join_reads[-1].result(timeout=30)
        assert resolved.status is IncidentStatus.RESOLVED and resolved.incident_id == old
        assert {d.document_id for d in resolved.documents} == {first.id, second.id}
        assert resolved.last_detected_at == at(3)
        assert store.get_incident(old) == resolved
        assert listed(store, entity_id=entity, status=IncidentStatus.OPEN) == []
