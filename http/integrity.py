"""``GET /api/v1/integrity/status``: how much of the vault the sweep has re-verified.

For admins, auditors and compliance officers (a role check: the figures
span every entity, so no one entity's permission answers for them).
"""

from __future__ import annotations

from quart import Blueprint, Response

from actors.integrity_reads import integrity_status
from vault.domain.models import iso_response
from vault.domain.permissions import OVERSIGHT_ROLES, require_role

from .responses import json_response
from .state import identify, state

integrity_api = Blueprint("integrity", __name__, url_prefix="/api/v1")

@integrity_api.get("/integrity/status")
async def status() -> Response:
    actor = identify(None)
    require_role(actor, OVERSIGHT_ROLES, "read the integrity status")
    found = await integrity_status(state().vault.backends)
    coverage = found.coverage
    return json_response({
        "period_hours": found.period_hours,
        "documents": coverage.documents,
        "verified_within_period": coverage.verified_within_period,
        "overdue": coverage.overdue,
        "never_verified": coverage.never_verified,
        "mismatched": coverage.mismatched,
        "oldest_verification_at": iso_response(coverage.oldest_verification_at),
        "sweep": {
            "enabled": found.sweep_enabled,
            "bytes_per_second": found.bytes_per_second,
            "last_pass_completed_at": iso_response(found.last_pass_completed_at),
        },
    })
