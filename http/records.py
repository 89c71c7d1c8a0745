"""Records management routes: retention policies, a document's retention, legal holds.

- ``PUT /api/v1/retention-policies/{document_type}`` (admin): a new version
  (201); 409 ``RETENTION_CANNOT_SHORTEN`` when it would keep any document
  less long or less strictly. ``GET /api/v1/retention-policies`` (admin,
  auditor, compliance officer): every type's versions.
- ``GET /api/v1/documents/{id}/retention`` (the same readers): the record,
  the holds covering it, whether anything blocks disposition, and the
  object store's own lock on the object.
- ``POST /api/v1/legal-holds`` (admin, compliance officer; 201),
  ``.../{id}/items``, ``.../{id}/items/remove``, ``.../{id}/release``;
  ``GET /api/v1/legal-holds[/{id}]`` (the readers). A released hold answers
  409 ``LEGAL_HOLD_RELEASED`` to any change.

Order of checks: 401, 422, 404, 403.
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, Response

from vault.domain.errors import InvalidRequest
from vault.domain.holds import (
    HoldStatus,
    ItemKind,
    LegalHold,
    parse_item_change,
    parse_new_hold,
    parse_release,
)
from vault.domain.models import DocumentType, Role, iso_response
from vault.domain.permissions import COMPLIANCE_ROLES, OVERSIGHT_ROLES, require_role
from vault.domain.retention import RetentionPolicy, parse_policy

from .documents import json_body, next_position, query_choice, query_cursor
from .responses import json_response
from .state import correlation_id, identify, parse_uuid, state

records_api = Blueprint("records", __name__, url_prefix="/api/v1")

ADMIN_ONLY = frozenset({Role.ADMIN})
PAGE_SIZE = 50


def _uuid(raw: str, name: str) -> UUID:
    parsed = parse_uuid(raw, "path", name)
    assert isinstance(parsed, UUID)
    return parsed


def _document_type(raw: str) -> DocumentType:
    try:
        return DocumentType(raw)
    except ValueError:
        allowed = ", ".join(t.value for t in DocumentType)
        raise InvalidRequest.field("path", "document_type", f"must be one of {allowed}") from None


def policy_json(policy: RetentionPolicy) -> dict[str, object]:
    return {
        "document_type": policy.document_type.value,
        "version": policy.version,
        "period": policy.period.text(),
        "mode": policy.mode.value,
        "on_expiry": policy.on_expiry.value,
        "created_at": iso_response(policy.created_at),
        "created_by": None if policy.created_by is None else str(policy.created_by),
    }


def hold_json(hold: LegalHold) -> dict[str, object]:
    def who(value: UUID | None) -> str | None:
        return None if value is None else str(value)

    return {
        "hold_id": str(hold.hold_id),
        "name": hold.name,
        "matter": hold.matter,
        "reason": hold.reason,
        "custodian": hold.custodian,
        "status": hold.status.value,
        "created_at": iso_response(hold.created_at),
        "created_by": who(hold.created_by),
        "document_ids": [str(d) for d in hold.covered(ItemKind.DOCUMENT)],
        "entity_ids": [str(e) for e in hold.covered(ItemKind.ENTITY)],
        "items": [
            {
                "kind": item.kind.value,
                "target_id": str(item.target_id),
                "added_at": iso_response(item.added_at),
                "added_by": who(item.added_by),
                "added_reason": item.added_reason,
                "removed_at": iso_response(item.removed_at),
                "removed_by": who(item.removed_by),
                "removed_reason": item.removed_reason,
            }
            for item in hold.items
        ],
        "released_at": iso_response(hold.released_at),
        "released_by": who(hold.released_by),
        "release_reason": hold.release_reason,
    }


@records_api.put("/retention-policies/<document_type>")
async def put_policy(document_type: str) -> Response:
    actor = identify(None)
    body = await json_body()
    kind = _document_type(document_type)
    asked = parse_policy(body)
    require_role(actor, ADMIN_ONLY, "set retention policies")
    policy, moved = await state().vault.records.put_policy(kind, asked, actor, correlation_id())
    return json_response({**policy_json(policy), "documents_lengthened": moved}, status=201)


@records_api.get("/retention-policies")
async def list_policies() -> Response:
    actor = identify(None)
    require_role(actor, OVERSIGHT_ROLES, "read retention policies")
    by_type: dict[str, list[RetentionPolicy]] = {}
    for policy in await state().vault.records.policies():
        by_type.setdefault(policy.document_type.value, []).append(policy)
    return json_response({
        "policies": [
            {
                "document_type": kind,
                "current": policy_json(versions[-1]),
                "versions": [policy_json(v) for v in versions],
            }
            for kind, versions in by_type.items()
        ]
    })


@records_api.get("/documents/<document_id>/retention")
async def document_retention(document_id: str) -> Response:
    actor = identify(None)
    named = _uuid(document_id, "document_id")
    view = await state().vault.records.retention_of(named)  # 404 before 403
    require_role(actor, OVERSIGHT_ROLES, "read retention")
    record, lock = view.retention, view.storage
    blocked = view.blocked_by
    return json_response({
        "document_id": str(view.document.id),
        "policy": None if record is None else {
            "document_type": record.document_type.value, "version": record.policy_version,
        },
        "mode": None if record is None else record.mode.value,
        "retain_until": None if record is None else iso_response(record.retain_until),
        "holds": [str(h) for h in view.holds],
        "disposable": not blocked,
        "blocked_by": blocked,
        "storage": {
            "version_id": lock.version_id,
            "lock_mode": None if lock.mode is None else lock.mode.value,
            "retain_until": iso_response(lock.retain_until),
            "legal_hold": lock.legal_hold,
        },
    })


@records_api.post("/legal-holds")
async def create_hold() -> Response:
    actor = identify(None)
    new = parse_new_hold(await json_body())
    require_role(actor, COMPLIANCE_ROLES, "place legal holds")
    hold = await state().vault.records.create_hold(new, actor, correlation_id())
    return json_response(hold_json(hold), status=201)


async def _change(hold_id: str, *, add: bool) -> Response:
    actor = identify(None)
    body = await json_body()
    named = _uuid(hold_id, "hold_id")
    change = parse_item_change(body)
    records = state().vault.records
    await records.hold(named)  # 404 before 403
    require_role(actor, COMPLIANCE_ROLES, "change legal holds")
    hold = await records.change_items(named, change, add=add, actor=actor,
                                      correlation_id=correlation_id())
    return json_response(hold_json(hold))


@records_api.post("/legal-holds/<hold_id>/items")
async def add_items(hold_id: str) -> Response:
    return await _change(hold_id, add=True)


@records_api.post("/legal-holds/<hold_id>/items/remove")
async def remove_items(hold_id: str) -> Response:
    return await _change(hold_id, add=False)


@records_api.post("/legal-holds/<hold_id>/release")
async def release(hold_id: str) -> Response:
    actor = identify(None)
    body = await json_body()
    named = _uuid(hold_id, "hold_id")
    reason = parse_release(body)
    records = state().vault.records
    await records.hold(named)
    require_role(actor, COMPLIANCE_ROLES, "release legal holds")
    return json_response(hold_json(await records.release(named, reason, actor,
                                                         correlation_id())))


@records_api.get("/legal-holds")
async def list_holds() -> Response:
    actor = identify(None)
    status = query_choice("status", HoldStatus)
    after = query_cursor()
    require_role(actor, OVERSIGHT_ROLES, "read legal holds")
    found = await state().vault.records.holds(status=status, limit=PAGE_SIZE + 1, after=after)
    page = found[:PAGE_SIZE]
    next_cursor = next_position(found, PAGE_SIZE, lambda h: (h.created_at, h.hold_id))
    return json_response({"legal_holds": [hold_json(h) for h in page],
                          "next_cursor": next_cursor})


@records_api.get("/legal-holds/<hold_id>")
async def get_hold(hold_id: str) -> Response:
    actor = identify(None)
    named = _uuid(hold_id, "hold_id")
    hold = await state().vault.records.hold(named)
    require_role(actor, OVERSIGHT_ROLES, "read legal holds")
    return json_response(hold_json(hold))
