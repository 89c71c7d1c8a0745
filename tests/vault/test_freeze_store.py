"""Entity freezes in the ``MetadataStore``, run against every backend in ``conftest``.

``record_verification(freeze_on_mismatch=True)`` freezes a mismatch's entity
in its own transaction (once: a frozen entity stays as it is and announces
nothing more); ``set_freeze`` is the compliance officer's freeze or
unfreeze, with its ``entity.frozen`` / ``entity.unfrozen`` audit event only
when it changes something; ``entity_freeze`` reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.vault.store_helpers import BASE, StoreBackend, make_document, race, upload
from vault.adapters.stores import freezes as freezes_module
from vault.adapters.stores.freezes import freeze_for_mismatch
from vault.domain.events import Destination
from vault.domain.freezes import MISMATCH_REASON, FreezeState
from vault.domain.incidents import Incident
from vault.domain.models import Actor, Document, DocumentStatus, Role
from vault.ports import MetadataStore

OFFICER = Actor.user(uuid4(), Role.COMPLIANCE_OFFICER)
BAD_HASH = "f" * 64
FREEZE_ACTIONS = {"entity.frozen", "entity.unfrozen"}


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def mismatch(
    store: MetadataStore, doc: Document, when: datetime, *, freeze: bool = True
) -> Document:
    return store.record_verification(
        doc.id, status=DocumentStatus.MISMATCH, calculated_hash=BAD_HASH, verified_by=None,
        verified_at=when, events=lambda _: [], freeze_on_mismatch=freeze,
    )


def only_incident(store: MetadataStore, entity_id: UUID) -> Incident:
    (found,) = store.list_incidents(entity_id=entity_id, status=None, limit=10, after=None)
    return found


def freeze_events(store: MetadataStore, entity_id: UUID | None = None) -> list[dict[str, Any]]:
    """Every ``entity.frozen`` / ``entity.unfrozen`` in the outbox, oldest first."""
    bodies: list[dict[str, Any]] = []
    while rows := store.claim_outbox([Destination.AUDIT_EVENTS], 1000, BASE, 30):
        bodies.extend(dict(row.event.body) for row in rows)
        store.mark_delivered([row.id for row in rows], BASE)
    return [
        body for body in bodies
        if body["action"] in FREEZE_ACTIONS
        and (entity_id is None or body["entity_id"] == str(entity_id))
    ]


def set_freeze(
    store: MetadataStore, entity_id: UUID, frozen: bool, when: datetime,
    actor: Actor = OFFICER, reason: str = "court order",
) -> tuple[FreezeState, bool]:
    return store.set_freeze(
        entity_id, frozen=frozen, actor=actor, reason=reason, correlation_id="req-7", at=when
    )


class TestRead:
    def test_an_unknown_entity_is_not_frozen(self, store: MetadataStore) -> None:
        entity = uuid4()
        assert store.entity_freeze(entity) == FreezeState(entity, False)

    def test_a_mismatch_without_freeze_on_mismatch_does_not_freeze(
        self, store: MetadataStore
    ) -> None:
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        mismatch(store, doc, at(1), freeze=False)
        assert store.entity_freeze(entity) == FreezeState(entity, False)
        assert freeze_events(store) == []

    def test_freeze_on_mismatch_is_off_by_default(self, store: MetadataStore) -> None:
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        store.record_verification(
            doc.id, status=DocumentStatus.MISMATCH, calculated_hash=BAD_HASH, verified_by=None,
            verified_at=at(1), events=lambda _: [],
        )
        assert store.entity_freeze(entity).frozen is False


class TestMismatch:
    def test_a_mismatch_freezes_its_entity(self, store: MetadataStore) -> None:
        """Frozen at the verification's time, for the open incident, by nobody; one
        ``entity.frozen`` by the system."""
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))

        mismatch(store, doc, at(3))

        incident = only_incident(store, entity)
        assert store.entity_freeze(entity) == FreezeState(
            entity, True, at(3), MISMATCH_REASON, incident.incident_id, None
        )
        (event,) = freeze_events(store)
        assert event["action"] == "entity.frozen"
        assert event["entity_id"] == str(entity)
        assert event["entity_type"] == "entity"
        assert event["actor_type"] == "system"
        assert event["actor_id"] is None
        assert event["details"] == {
            "reason": MISMATCH_REASON, "incident_id": str(incident.incident_id)
        }

    def test_an_intact_verification_does_not_freeze(self, store: MetadataStore) -> None:
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        store.record_verification(
            doc.id, status=DocumentStatus.VERIFIED, calculated_hash=doc.sha256_hash,
            verified_by=None, verified_at=at(1), events=lambda _: [], freeze_on_mismatch=True,
        )
        assert store.entity_freeze(entity).frozen is False
        assert freeze_events(store) == []

    def test_a_second_mismatch_changes_nothing(self, store: MetadataStore) -> None:
        entity = uuid4()
        first, second = (upload(store, make_document(entity_id=entity)) for _ in range(2))
        mismatch(store, first, at(1))
        before = store.entity_freeze(entity)

        mismatch(store, second, at(2))

        assert store.entity_freeze(entity) == before
        assert len(freeze_events(store)) == 1

    def test_freeze_for_mismatch_freezes_once(
        self, store: MetadataStore, store_backend: StoreBackend
    ) -> None:
        """Called straight in a transaction: True the first time, False after, one event."""
        entity, incident = uuid4(), uuid4()
        sql_store: Any = store

        def freeze(when: datetime) -> bool:
            with sql_store._transaction("test_freeze") as db:
                froze: bool = freeze_for_mismatch(db, entity, incident, when)
            return froze

        assert freeze(at(1)) is True
        assert freeze(at(2)) is False
        assert store.entity_freeze(entity) == FreezeState(
            entity, True, at(1), MISMATCH_REASON, incident, None
        )
        (event,) = freeze_events(store, entity)
        assert event["details"]["incident_id"] == str(incident)

    def test_a_mismatch_refreezes_after_an_unfreeze(self, store: MetadataStore) -> None:
        """Unfrozen, the entity's next mismatch freezes it again (a new event)."""
        entity = uuid4()
        first, second = (upload(store, make_document(entity_id=entity)) for _ in range(2))
        mismatch(store, first, at(1))
        set_freeze(store, entity, False, at(2))

        mismatch(store, second, at(3))

        found = store.entity_freeze(entity)
        assert (found.frozen, found.since, found.by) == (True, at(3), None)
        assert found.incident_id == only_incident(store, entity).incident_id
        actions = [e["action"] for e in freeze_events(store)]
        assert actions == ["entity.frozen", "entity.unfrozen", "entity.frozen"]

    def test_a_manual_freeze_is_kept(self, store: MetadataStore) -> None:
        """Frozen by hand, a mismatch leaves the freeze (and its actor) as it is."""
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        manual, _ = set_freeze(store, entity, True, at(1))

        mismatch(store, doc, at(2))

        assert store.entity_freeze(entity) == manual
        assert len(freeze_events(store)) == 1

    def test_only_the_mismatched_entity_is_frozen(self, store: MetadataStore) -> None:
        entity, other = uuid4(), uuid4()
        doc = upload(store, make_document(entity_id=entity))
        upload(store, make_document(entity_id=other))
        mismatch(store, doc, at(1))
        assert store.entity_freeze(other) == FreezeState(other, False)


class TestSetFreeze:
    def test_round_trip(self, store: MetadataStore) -> None:
        """Freeze by hand (by the officer, no incident), read back, unfreeze; each change
        is one event carrying the actor, reason and correlation id."""
        entity = uuid4()

        state, changed = set_freeze(store, entity, True, at(1), reason="court order 17")

        assert changed is True
        assert state == FreezeState(entity, True, at(1), "court order 17", None, OFFICER.id)
        assert store.entity_freeze(entity) == state

        state, changed = set_freeze(store, entity, False, at(2), reason="lifted")

        assert changed is True
        assert state == FreezeState(entity, False)
        assert store.entity_freeze(entity) == state

        frozen, unfrozen = freeze_events(store, entity)
        for event, action in ((frozen, "entity.frozen"), (unfrozen, "entity.unfrozen")):
            assert event["action"] == action
            assert event["entity_id"] == str(entity)
            assert event["entity_type"] == "entity"
            assert event["actor_id"] == str(OFFICER.id)
            assert event["actor_type"] == OFFICER.type
            assert event["correlation_id"] == "req-7"
        assert frozen["details"] == {"reason": "court order 17", "incident_id": None}
        assert unfrozen["details"] == {"reason": "lifted", "incident_id": None}

    def test_freezing_a_frozen_entity_changes_nothing(self, store: MetadataStore) -> None:
        entity = uuid4()
        first, _ = set_freeze(store, entity, True, at(1), reason="first")

        again, changed = set_freeze(store, entity, True, at(2), reason="second")

        assert changed is False
        assert again == first
        assert store.entity_freeze(entity) == first
        assert len(freeze_events(store)) == 1

    def test_unfreezing_an_unknown_entity_changes_nothing(self, store: MetadataStore) -> None:
        entity = uuid4()
        state, changed = set_freeze(store, entity, False, at(1))
        assert (state, changed) == (FreezeState(entity, False), False)
        assert freeze_events(store) == []
        assert store.entity_freeze(entity) == FreezeState(entity, False)

    def test_unfreezing_twice_announces_once(self, store: MetadataStore) -> None:
        entity = uuid4()
        set_freeze(store, entity, True, at(1))
        set_freeze(store, entity, False, at(2))
        _, changed = set_freeze(store, entity, False, at(3))
        assert changed is False
        assert [e["action"] for e in freeze_events(store)] == ["entity.frozen", "entity.unfrozen"]

    def test_unfreezing_a_mismatch_freeze_names_its_incident(
        self, store: MetadataStore
    ) -> None:
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        mismatch(store, doc, at(1))
        incident = only_incident(store, entity)

        state, changed = set_freeze(store, entity, False, at(2), reason="restored")

        assert (state, changed) == (FreezeState(entity, False), True)
        _, unfrozen = freeze_events(store, entity)
        assert unfrozen["action"] == "entity.unfrozen"
        assert unfrozen["details"] == {
            "reason": "restored", "incident_id": str(incident.incident_id)
        }

    def test_refreezing_by_hand_drops_the_old_incident(self, store: MetadataStore) -> None:
        """Mismatch freeze, unfreeze, then a manual freeze: by the officer, no incident."""
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        mismatch(store, doc, at(1))
        set_freeze(store, entity, False, at(2))

        state, changed = set_freeze(store, entity, True, at(3), reason="again")

        assert changed is True
        assert state == FreezeState(entity, True, at(3), "again", None, OFFICER.id)
        assert store.entity_freeze(entity) == state

    def test_a_reopened_store_reads_the_freeze(self, store_backend: StoreBackend) -> None:
        entity = uuid4()
        state, _ = set_freeze(store_backend.open_store(), entity, True, at(1))
        assert store_backend.open_store().entity_freeze(entity) == state

    def test_racing_unfreezes_announce_once(self, store_backend: StoreBackend) -> None:
        """Eight unfreezes of one frozen entity on two stores: one changes it."""
        stores = [store_backend.open_store(), store_backend.open_store()]
        entity = uuid4()
        set_freeze(stores[0], entity, True, at(1))

        outcomes = race([partial(set_freeze, stores[i % 2], entity, False, at(2))
                         for i in range(8)])

        assert sorted(changed for _, changed in outcomes) == [False] * 7 + [True]  # type: ignore[misc]
        assert [e["action"] for e in freeze_events(stores[1])] == [
            "entity.frozen", "entity.unfrozen"
        ]


@pytest.fixture
def other_writes_after_first_read(
    monkeypatch: pytest.MonkeyPatch, pg_backend: StoreBackend
) -> Iterator[list[Any]]:
    """Once armed (by appending a callable taking a store), the next ``set_freeze`` that
    finds no row for its entity has another store run that callable to completion before
    it goes on: the interleaving two processes can produce."""
    other = pg_backend.open_store()
    armed: list[Any] = []
    fired = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    real = FreezeState

    def state(*args: Any, **kwargs: Any) -> FreezeState:
        if armed and not fired.is_set() and threading.current_thread() is threading.main_thread():
            fired.set()
            future: Future[Any] = pool.submit(armed[0], other)
            future.result(timeout=10)
        return real(*args, **kwargs)

    monkeypatch.setattr(freezes_module, "FreezeState", state)
    try:
        yield armed
    finally:
        pool.shutdown(wait=True)
    assert fired.is_set()


class TestFreezeRaces:
    def test_racing_first_freezes_announce_once(
        self, pg_backend: StoreBackend, other_writes_after_first_read: list[Any]
    ) -> None:
        store = pg_backend.open_store()
        entity = uuid4()
        other_writes_after_first_read.append(
            lambda other: set_freeze(other, entity, True, at(1), reason="other")
        )

        set_freeze(store, entity, True, at(1), reason="mine")

        assert len(freeze_events(store, entity)) == 1

    def test_a_manual_freeze_racing_a_mismatch_keeps_the_incident(
        self, pg_backend: StoreBackend, other_writes_after_first_read: list[Any]
    ) -> None:
        store = pg_backend.open_store()
        entity = uuid4()
        doc = upload(store, make_document(entity_id=entity))
        other_writes_after_first_read.append(lambda other: mismatch(other, doc, at(1)))

        set_freeze(store, entity, True, at(2))

        found = store.entity_freeze(entity)
        assert found.incident_id == only_incident(store, entity).incident_id
        assert len(freeze_events(store, entity)) == 1
