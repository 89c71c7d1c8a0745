"""Routes with no identity: health, readiness, metrics, the API description,
and the signed blob URLs of the embedded store (the token is the credential)."""

from __future__ import annotations

import time
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

import yaml
from quart import Blueprint, Response

from vault.adapters.blobs.signing import InvalidToken
from vault.domain.errors import Forbidden
from vault.domain.uploads import document_of
from vault.domain.validation import content_disposition

from .metrics import CONTENT_TYPE
from .problems import problem
from .responses import json_response
from .state import state

operator = Blueprint("operator", __name__)


@operator.get("/healthz")
async def healthz() -> Response:
    actors = state().vault.health()
    healthy = all(h.healthy for h in actors)
    states = {h.name: h.state.value for h in actors}
    return json_response(
        {"status": "ok" if healthy else "degraded", "actors": states}, 200 if healthy else 503
    )


@operator.get("/healthz/actors")
async def healthz_actors() -> Response:
    return json_response({"actors": [h.snapshot() for h in state().vault.health()]})


@operator.get("/healthz/actors/<name>")
async def healthz_actor(name: str) -> Response:
    health = state().vault.health_of(name)
    if health is None:
        return problem(404, "Not Found", f"No actor named {name!r}", "NOT_FOUND")
    return json_response(health.snapshot(), 200 if health.healthy else 503)


@operator.get("/readyz")
async def readyz() -> Response:
    vault = state().vault
    checks = await vault.reads.readiness()
    publishers = [vault.audit_publisher.mailbox.health, vault.alerter.mailbox.health]
    failed = [h.name for h in publishers if not h.healthy]
    checks["queues"] = "ok" if not failed else f"publisher not running: {', '.join(failed)}"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


@operator.get("/metrics")
async def metrics() -> Response:
    return Response(state().metrics.render(), content_type=CONTENT_TYPE)


@cache
def openapi_document() -> dict[str, Any]:
    # Read beside this module, not through importlib.resources: ``vault_http`` is
    # a namespace package (an __init__.py would shadow the stdlib ``http`` from
    # the project root), and on Python 3.11 resources fails on it in an
    # editable install, whose path includes a non-directory entry.
    text = (Path(__file__).parent / "openapi.yaml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@operator.get("/openapi.json")
async def openapijson_response() -> Response:
    return json_response(openapi_document())


@operator.get("/docs")
async def docs() -> Response:
    spec = openapi_document()
    rows = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{escape(path)}</code></td>"
                f"<td>{escape(op.get('summary', ''))}</td></tr>"
            )
    info = spec.get("info", {})
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(info.get('title', 'API'))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
td,th{{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>
<p>{escape(info.get('description', ''))}</p>
<p>Machine-readable description: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3).</p>
<table><tr><th>Method</th><th>Path</th><th>Summary</th></tr>{''.join(rows)}</table>
</body></html>"""
    return Response(page, content_type="text/html; charset=utf-8")


@operator.get("/api/v1/blobs/<token>")
async def blob(token: str) -> Response:
    st = state()
    if st.signer is None:
        raise Forbidden("Signed blob URLs are served by the object store in this deployment")
    try:
        claims = st.signer.verify(token, time.time())
    except InvalidToken as exc:
        raise Forbidden(f"Download URL {exc.reason}") from None
    document_id = document_of(claims.key)
    if document_id is not None:
        doc = await st.vault.reads.document(document_id)
        await st.vault.freezes.check(doc.entity_id)
    # A missing or damaged object fails here, before any answer is sent; once
    # the headers are gone, cutting the connection is the only honest signal
    # left that the body is incomplete.
    stream = await st.vault.reads.blob(claims.key, claims.version_id)
    response = Response(stream, content_type=claims.mime_type)
    response.headers["Content-Disposition"] = content_disposition(claims.filename)
    response.headers["Cache-Control"] = "private, no-store"
    return response
