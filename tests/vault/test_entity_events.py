"""Reading the permissions service's entity events, bare or in an SNS envelope."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from vault.domain.entity_events import Unprocessable, parse_entity_event

ENTITY = uuid4()
EVENT = {"event_id": "evt-1", "source": "entity_permissions_core", "action": "entity.deleted",
         "entity_id": str(ENTITY), "entity_type": "issuer"}  # fmt: skip


def test_a_bare_event_is_read() -> None:
    """The event itself, every field taken as sent."""
    event = parse_entity_event(json.dumps(EVENT))
    assert (event.event_id, event.source, event.action) == (
        "evt-1", "entity_permissions_core", "entity.deleted",
    )  # fmt: skip
    assert (event.entity_id, event.entity_type) == (ENTITY, "issuer")


def test_an_sns_envelope_is_unwrapped() -> None:
    """``{"Type": "Notification", "Message": "<json>"}`` carries the same event."""
    body = json.dumps({"Type": "Notification", "Message": json.dumps(EVENT)})
    assert parse_entity_event(body) == parse_entity_event(json.dumps(EVENT))


def test_a_missing_source_is_unknown() -> None:
    """``source`` is optional; without it the event says ``unknown``."""
    event = parse_entity_event(json.dumps({k: v for k, v in EVENT.items() if k != "source"}))
    assert event.source == "unknown"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ('{"Type": "Notification"}', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**EVENT, "entity_id": ""}), "missing fields: entity_id"),
        (json.dumps({"source": "x"}), "missing fields: event_id, action, entity_id, entity_type"),
        (json.dumps({**EVENT, "entity_id": "nope"}), "not a UUID"),
    ],
)
def test_bodies_that_can_never_be_processed_say_why(body: str, message: str) -> None:
    """Not JSON, not an object, fields missing or malformed: ``Unprocessable`` naming it."""
    with pytest.raises(Unprocessable, match=message):
        parse_entity_event(body)
