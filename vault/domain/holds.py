"""Legal holds: named objects that keep documents from disposition while litigation or an
investigation needs them.

A hold names its matter, a reason and a custodian, and covers documents by
id and entities by id (an entity's documents uploaded later included).
Items are added and removed with a reason each; releasing the hold ends it
for good. Holds are never deleted, and neither are their items: a removed
item keeps when and why it was removed. A document is held while any
active hold covers it, by its id or by its entity's. Archiving stays
allowed under a hold (it is a soft delete); only disposition is blocked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from vault.domain.errors import InvalidRequest, VaultError
from vault.domain.validation import required_text, uuid_list

MAX_TEXT_CHARS = 2000
MAX_NAME_CHARS = 200
MAX_ITEMS_PER_REQUEST = 1000


class HoldStatus(enum.StrEnum):
    ACTIVE = "active"
    RELEASED = "released"


class ItemKind(enum.StrEnum):
    DOCUMENT = "document"
    ENTITY = "entity"


class HoldNotFound(VaultError, LookupError):
    status = 404
    error_code = "LEGAL_HOLD_NOT_FOUND"
    title = "Legal Hold Not Found"


class HoldReleased(VaultError):
    status = 409
    error_code = "LEGAL_HOLD_RELEASED"
    title = "Legal Hold Released"


@attrs.frozen
class HoldItem:
    kind: ItemKind
    target_id: UUID
    added_at: datetime
    added_by: UUID | None
    added_reason: str | None
    removed_at: datetime | None = None
    removed_by: UUID | None = None
    removed_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.removed_at is None


@attrs.frozen
class LegalHold:
    hold_id: UUID
    name: str
    matter: str
    reason: str
    custodian: str
    status: HoldStatus
    created_at: datetime
    created_by: UUID | None
    items: tuple[HoldItem, ...] = ()
    released_at: datetime | None = None
    released_by: UUID | None = None
    release_reason: str | None = None

    def covered(self, kind: ItemKind) -> list[UUID]:
        """The ids of this kind the hold covers now."""
        return [i.target_id for i in self.items if i.kind is kind and i.active]


@attrs.frozen
class NewHold:
    name: str
    matter: str
    reason: str
    custodian: str
    document_ids: tuple[UUID, ...]
    entity_ids: tuple[UUID, ...]


@attrs.frozen
class ItemChange:
    document_ids: tuple[UUID, ...]
    entity_ids: tuple[UUID, ...]
    reason: str


def _object(body: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest.field("body", "body", "must be a JSON object")
    for key in body:
        if key not in allowed:
            raise InvalidRequest.field("body", str(key), "is not a field of this request")
    return body


def parse_new_hold(body: object) -> NewHold:
    """``POST /api/v1/legal-holds``: every text field required; ids may be empty."""
    found = _object(body, frozenset(
        {"name", "matter", "reason", "custodian", "document_ids", "entity_ids"}
    ))
    return NewHold(
        name=required_text(found.get("name"), "name", MAX_NAME_CHARS),
        matter=required_text(found.get("matter"), "matter", MAX_TEXT_CHARS),
        reason=required_text(found.get("reason"), "reason", MAX_TEXT_CHARS),
        custodian=required_text(found.get("custodian"), "custodian", MAX_NAME_CHARS),
        document_ids=uuid_list(found.get("document_ids"), "document_ids", MAX_ITEMS_PER_REQUEST),
        entity_ids=uuid_list(found.get("entity_ids"), "entity_ids", MAX_ITEMS_PER_REQUEST),
    )


def parse_item_change(body: object) -> ItemChange:
    """``.../items`` and ``.../items/remove``: at least one id, and a reason."""
    found = _object(body, frozenset({"document_ids", "entity_ids", "reason"}))
    change = ItemChange(
        document_ids=uuid_list(found.get("document_ids"), "document_ids", MAX_ITEMS_PER_REQUEST),
        entity_ids=uuid_list(found.get("entity_ids"), "entity_ids", MAX_ITEMS_PER_REQUEST),
        reason=required_text(found.get("reason"), "reason", MAX_TEXT_CHARS),
    )
    if not change.document_ids and not change.entity_ids:
        raise InvalidRequest.field("body", "document_ids", "name at least one document or entity")
    return change


def parse_release(body: object) -> str:
    found = _object(body, frozenset({"reason"}))
    return required_text(found.get("reason"), "reason", MAX_TEXT_CHARS)
