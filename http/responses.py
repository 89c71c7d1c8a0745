"""JSON answers, encoded by orjson (UUIDs and enums as their canonical strings)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")
