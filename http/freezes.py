"""Entity freeze: ``GET``, and ``POST .../freeze`` / ``.../unfreeze`` under ``/api/v1/entities``.

Anyone identified may read an entity's freeze (an issuer needs to know why
its uploads answer 423). Freezing and unfreezing are for compliance
officers and admins; with ``EPR_MOCK_MODE=false`` the permissions service
is asked ``document:archive`` about the entity instead. Order of checks:
401, 422, 403. Asking for the state the entity is in answers it unchanged
and announces nothing.
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, Response

from vault.domain.freezes import FreezeState, check_reason
from vault.domain.models import Action, Actor, iso_response
from vault.domain.permissions import COMPLIANCE_ROLES, require_role

from .documents import json_body
from .responses import json_response
from .state import correlation_id, identify, parse_uuid, state

freezes_api = Blueprint("freezes", __name__, url_prefix="/api/v1")

def freeze_json(found: FreezeState) -> dict[str, object]:
    return {
        "entity_id": str(found.entity_id),
        "frozen": found.frozen,
        "since": iso_response(found.since),
        "reason": found.reason,
        "incident_id": None if found.incident_id is None else str(found.incident_id),
        "by": None if found.by is None else str(found.by),
    }


@freezes_api.get("/entities/<entity_id>/freeze")
async def get_freeze(entity_id: str) -> Response:
    identify(None)
    named = parse_uuid(entity_id, "path", "entity_id")
    assert named is not None
    return json_response(freeze_json(await state().vault.freezes.state(named)))


async def _change(entity_id: str, *, frozen: bool) -> Response:
    actor = identify(None)
    body = await json_body()
    named = parse_uuid(entity_id, "path", "entity_id")
    reason = check_reason(body.get("reason"))
    assert named is not None
    await _may_change(actor, named)
    found = await state().vault.freezes.change(
        named, frozen=frozen, actor=actor, reason=reason, correlation_id=correlation_id()
    )
    return json_response(freeze_json(found))


async def _may_change(actor: Actor, entity_id: UUID) -> None:
    st = state()
    if st.settings.epr_mock_mode:
        require_role(actor, COMPLIANCE_ROLES, "freeze or unfreeze an entity")
        return
    await st.authorizer.authorize(actor, Action.ARCHIVE, entity_id)


@freezes_api.post("/entities/<entity_id>/freeze")
async def freeze(entity_id: str) -> Response:
    return await _change(entity_id, frozen=True)


@freezes_api.post("/entities/<entity_id>/unfreeze")
async def unfreeze(entity_id: str) -> Response:
    return await _change(entity_id, frozen=False)
