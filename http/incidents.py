"""Integrity incidents: ``GET /api/v1/incidents`` and ``POST /api/v1/incidents/{id}/resolve``.

Listing is for admins, auditors and compliance officers; resolving for
compliance officers and admins (role checks: an incident is about an
entity's integrity as the vault found it, not a document action). Order of
checks: 401, 422, 404, 403 (409 for an incident already resolved).
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, Response, request

from vault.domain.incidents import Incident, IncidentStatus, check_resolution
from vault.domain.models import iso_response
from vault.domain.permissions import COMPLIANCE_ROLES, OVERSIGHT_ROLES, require_role

from .documents import json_body, next_position, query_choice, query_cursor
from .responses import json_response
from .state import identify, parse_uuid, state

incidents_api = Blueprint("incidents", __name__, url_prefix="/api/v1")

PAGE_SIZE = 50


def incident_json(found: Incident) -> dict[str, object]:
    return {
        "incident_id": str(found.incident_id),
        "entity_id": str(found.entity_id),
        "entity_type": found.entity_type.value,
        "status": found.status.value,
        "opened_at": iso_response(found.opened_at),
        "last_detected_at": iso_response(found.last_detected_at),
        "documents": [
            {
                "document_id": str(d.document_id),
                "filename": d.filename,
                "expected_hash": d.expected_hash,
                "calculated_hash": d.calculated_hash,
                "detected_at": iso_response(d.detected_at),
            }
            for d in found.documents
        ],
        "resolved_at": iso_response(found.resolved_at),
        "resolved_by": None if found.resolved_by is None else str(found.resolved_by),
        "resolution": found.resolution,
    }


@incidents_api.get("/incidents")
async def list_incidents() -> Response:
    actor = identify(None)
    entity_id = parse_uuid(request.args.get("entity_id"), "query", "entity_id", required=False)
    status = query_choice("status", IncidentStatus)
    after = query_cursor()
    require_role(actor, OVERSIGHT_ROLES, "read incidents")
    found = await state().vault.incidents.list(
        entity_id=entity_id, status=status, limit=PAGE_SIZE + 1, after=after
    )
    page = found[:PAGE_SIZE]
    next_cursor = next_position(found, PAGE_SIZE, lambda i: (i.opened_at, i.incident_id))
    return json_response(
        {"incidents": [incident_json(i) for i in page], "next_cursor": next_cursor}
    )


@incidents_api.post("/incidents/<incident_id>/resolve")
async def resolve(incident_id: str) -> Response:
    actor = identify(None)
    body = await json_body()
    named = parse_uuid(incident_id, "path", "incident_id")
    resolution = check_resolution(body.get("resolution"))
    assert isinstance(named, UUID)
    incidents = state().vault.incidents
    await incidents.get(named)  # 404 before 403
    require_role(actor, COMPLIANCE_ROLES, "resolve incidents")
    return json_response(incident_json(await incidents.resolve(named, actor, resolution)))
