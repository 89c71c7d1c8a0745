"""Errors as RFC 9457 problem documents, with the fields old clients read."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response
from werkzeug.exceptions import HTTPException

from vault.domain.errors import VaultError

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: "BAD_REQUEST",
    403: "UNAUTHORIZED_ACCESS",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "FILE_SIZE_EXCEEDED",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def problem(
    status: int,
    title: str,
    detail: str,
    error_code: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "error_code": error_code,
    }
    if extra:
        body.update(extra)
    response = Response(orjson.dumps(body), status=status, content_type=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_vault_error(exc: VaultError) -> Response:
    return problem(exc.status, exc.title, exc.detail, exc.error_code, exc.extra(), exc.headers())


def from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    return problem(
        status,
        exc.name,
        exc.description or exc.name,
        _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"),
    )


def internal_error() -> Response:
    return problem(500, "Internal Server Error", "An unexpected error occurred", "INTERNAL_ERROR")
