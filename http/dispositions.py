"""Disposition routes: what may go, proposing, a second person's approval, execution.

- ``GET /api/v1/dispositions/eligible`` (admin, auditor, compliance officer):
  documents past ``retain_until`` that no active hold covers, soonest
  expired first, with ``next_cursor``.
- ``POST /api/v1/dispositions`` ``{"document_ids", "reason"}`` (admin; 201):
  409 ``DOCUMENT_NOT_DISPOSABLE`` naming what blocks each document.
- ``POST /api/v1/dispositions/{id}/approve`` (admin, compliance officer; never
  the proposer: 403).
- ``POST /api/v1/dispositions/{id}/execute`` (admin, compliance officer):
  retention and holds checked again, every stored version destroyed, the rows
  left as tombstones; 409 ``DOCUMENT_NOT_DISPOSABLE``, ``STORAGE_LOCKED`` or
  ``DISPOSITION_OUT_OF_TURN`` with nothing marked disposed.
- ``GET /api/v1/dispositions[/{id}]`` (the readers): the certificate.

Order of checks: 401, 422, 404 (of the disposition), 403, then 409; proposing
checks the role before the documents (401, 422, 403, 404, 409), and approval
answers 409 for a disposition not proposed before 403 for its proposer.
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, Response

from vault.domain.disposition import (
    Disposition,
    DispositionItem,
    DispositionStatus,
    EligibleDocument,
    parse_proposal,
)
from vault.domain.models import Role, iso_response
from vault.domain.permissions import COMPLIANCE_ROLES, OVERSIGHT_ROLES, require_role

from .documents import json_body, next_position, query_choice, query_cursor
from .responses import json_response
from .state import correlation_id, identify, parse_uuid, state

dispositions_api = Blueprint("dispositions", __name__, url_prefix="/api/v1")

PROPOSERS = frozenset({Role.ADMIN})
PAGE_SIZE = 50


def _who(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _item_json(item: DispositionItem) -> dict[str, object]:
    return {
        "document_id": str(item.document_id),
        "entity_id": str(item.entity_id),
        "entity_type": item.entity_type,
        "document_type": item.document_type,
        "filename": item.filename,
        "sha256_hash": item.sha256_hash,
        "size_bytes": item.size_bytes,
        "policy": None if item.policy_version is None else {
            "document_type": item.document_type, "version": item.policy_version,
        },
        "mode": item.retention_mode,
        "retain_until": iso_response(item.retain_until),
        "storage": {
            "bucket": item.storage_bucket,
            "key": item.storage_key,
            "versions": None if item.storage_versions is None else [
                {"version_id": v.version_id, "delete_marker": v.delete_marker}
                for v in item.storage_versions
            ],
        },
        "ledger": None if item.leaf_hash is None else {
            "leaf_hash": item.leaf_hash, "index": item.ledger_index,
        },
    }


def disposition_json(disposition: Disposition) -> dict[str, object]:
    return {
        "disposition_id": str(disposition.disposition_id),
        "status": disposition.status.value,
        "reason": disposition.reason,
        "proposed_by": _who(disposition.proposed_by),
        "proposed_role": disposition.proposed_role,
        "proposed_at": iso_response(disposition.proposed_at),
        "approved_by": _who(disposition.approved_by),
        "approved_role": disposition.approved_role,
        "approved_at": iso_response(disposition.approved_at),
        "holds_checked_at": iso_response(disposition.holds_checked_at),
        "executed_by": _who(disposition.executed_by),
        "executed_role": disposition.executed_role,
        "executed_at": iso_response(disposition.executed_at),
        "documents": [_item_json(item) for item in disposition.items],
    }


def _eligible_json(doc: EligibleDocument) -> dict[str, object]:
    return {
        "document_id": str(doc.document_id),
        "entity_id": str(doc.entity_id),
        "entity_type": doc.entity_type,
        "document_type": doc.document_type,
        "sha256_hash": doc.sha256_hash,
        "status": doc.status,
        "policy": {"document_type": doc.document_type, "version": doc.policy_version},
        "mode": doc.retention_mode,
        "retain_until": iso_response(doc.retain_until),
        "on_expiry": doc.on_expiry,
    }


def _disposition_id(raw: str) -> UUID:
    parsed = parse_uuid(raw, "path", "disposition_id")
    assert isinstance(parsed, UUID)
    return parsed


@dispositions_api.get("/dispositions/eligible")
async def eligible() -> Response:
    actor = identify(None)
    after = query_cursor()
    require_role(actor, OVERSIGHT_ROLES, "read what may be disposed of")
    found = await state().vault.dispositions.eligible(
        limit=PAGE_SIZE + 1, after=None if after is None else (after.created_at, after.document_id)
    )
    return json_response({
        "documents": [_eligible_json(d) for d in found[:PAGE_SIZE]],
        "next_cursor": next_position(found, PAGE_SIZE, lambda d: (d.retain_until, d.document_id)),
    })


@dispositions_api.post("/dispositions")
async def propose() -> Response:
    actor = identify(None)
    proposal = parse_proposal(await json_body())
    require_role(actor, PROPOSERS, "propose dispositions")
    proposed = await state().vault.dispositions.propose(proposal, actor, correlation_id())
    return json_response(disposition_json(proposed), status=201)


@dispositions_api.post("/dispositions/<disposition_id>/approve")
async def approve(disposition_id: str) -> Response:
    actor = identify(None)
    named = _disposition_id(disposition_id)
    dispositions = state().vault.dispositions
    await dispositions.get(named)  # 404 before 403
    require_role(actor, COMPLIANCE_ROLES, "approve dispositions")
    return json_response(disposition_json(
        await dispositions.approve(named, actor, correlation_id())
    ))


@dispositions_api.post("/dispositions/<disposition_id>/execute")
async def execute(disposition_id: str) -> Response:
    actor = identify(None)
    named = _disposition_id(disposition_id)
    dispositions = state().vault.dispositions
    await dispositions.get(named)
    require_role(actor, COMPLIANCE_ROLES, "execute dispositions")
    return json_response(disposition_json(
        await dispositions.execute(named, actor, correlation_id())
    ))


@dispositions_api.get("/dispositions")
async def list_dispositions() -> Response:
    actor = identify(None)
    status = query_choice("status", DispositionStatus)
    after = query_cursor()
    require_role(actor, OVERSIGHT_ROLES, "read dispositions")
    found = await state().vault.dispositions.listed(
        status=status, limit=PAGE_SIZE + 1, after=after
    )
    return json_response({
        "dispositions": [disposition_json(d) for d in found[:PAGE_SIZE]],
        "next_cursor": next_position(found, PAGE_SIZE,
                                     lambda d: (d.proposed_at, d.disposition_id)),
    })


@dispositions_api.get("/dispositions/<disposition_id>")
async def get_disposition(disposition_id: str) -> Response:
    actor = identify(None)
    named = _disposition_id(disposition_id)
    found = await state().vault.dispositions.get(named)
    require_role(actor, OVERSIGHT_ROLES, "read dispositions")
    return json_response(disposition_json(found))
