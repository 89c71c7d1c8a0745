"""What the permissions service announces about entities, as this service reads it.

The body on ``DOCUMENT_VAULT_SQS_URL`` is the event itself or an SNS
envelope around it (``{"Type": "Notification", "Message": "<json>"}``).
A body that can never be processed raises ``Unprocessable``: the poller
logs it and deletes the message instead of letting it come back forever.
"""

from __future__ import annotations

import json
from typing import Final
from uuid import UUID

import attrs

ENTITY_DELETED: Final = "entity.deleted"


@attrs.frozen
class EntityEvent:
    event_id: str
    source: str
    action: str
    entity_id: UUID
    entity_type: str


class Unprocessable(ValueError):
    """A message body that can never be processed (not JSON, fields missing)."""


def parse_entity_event(body: str) -> EntityEvent:
    """The event itself, or the event inside an SNS envelope."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification":
            data = json.loads(data["Message"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Unprocessable(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Unprocessable("body is not a JSON object")
    missing = [k for k in ("event_id", "action", "entity_id", "entity_type") if not data.get(k)]
    if missing:
        raise Unprocessable(f"missing fields: {', '.join(missing)}")
    try:
        entity_id = UUID(str(data["entity_id"]))
    except ValueError:
        raise Unprocessable(f"entity_id is not a UUID: {data['entity_id']!r}") from None
    return EntityEvent(
        event_id=str(data["event_id"]),
        source=str(data.get("source") or "unknown"),
        action=str(data["action"]),
        entity_id=entity_id,
        entity_type=str(data["entity_type"]),
    )
