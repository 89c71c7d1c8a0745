"""Routes with no identity: health, readiness, metrics, the API description,
and the signed blob URLs of the embedded store (the token is the credential)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from functools import cache
from html import escape
from importlib import resources
from typing import Any

import trio
import yaml
from quart import Blueprint, Response

from vault.errors import BlobUnreadable, Forbidden, VaultError
from vault.signing import InvalidToken

from .metrics import CONTENT_TYPE
from .state import state

operator = Blueprint("operator", __name__)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@operator.get("/healthz")
async def healthz() -> Response:
    actors = state().vault.health()
    healthy = all(h.healthy for h in actors)
    return _json(
        {"status": "ok" if healthy else "degraded", "actors": {h.name: h.state.value for h in actors}},
        200 if healthy else 503,
    )


@operator.get("/healthz/actors")
async def healthz_actors() -> Response:
    return _json({"actors": [h.snapshot() for h in state().vault.health()]})


@operator.get("/healthz/actors/<name>")
async def healthz_actor(name: str) -> Response:
    health = state().vault.health_of(name)
    if health is None:
        return _json({"detail": f"no actor named {name!r}"}, 404)
    return _json(health.snapshot(), 200 if health.healthy else 503)


@operator.get("/readyz")
async def readyz() -> Response:
    backends = state().vault.backends
    checks: dict[str, str] = {}
    for name, probe in (("database", backends.store.ping), ("blob_store", backends.blobs.ping)):
        try:
            with trio.fail_after(5):
                await backends.in_db(probe) if name == "database" else await backends.in_blobs(probe)
            checks[name] = "ok"
        except VaultError as exc:
            checks[name] = exc.detail
        except trio.TooSlowError:
            checks[name] = "timed out after 5 s"
    publishers = [state().vault.audit_publisher.mailbox.health, state().vault.alerter.mailbox.health]
    failed = [h.name for h in publishers if not h.healthy]
    checks["queues"] = "ok" if not failed else f"publisher not running: {', '.join(failed)}"
    ready = all(v == "ok" for v in checks.values())
    return _json({"status": "ok" if ready else "unavailable", "checks": checks},
                 200 if ready else 503)


@operator.get("/metrics")
async def metrics() -> Response:
    return Response(state().metrics.render(), content_type=CONTENT_TYPE)


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("vault_http").joinpath("openapi.yaml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@operator.get("/openapi.json")
async def openapi_json() -> Response:
    return _json(openapi_document())


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
    backends = st.vault.backends
    chunks: Iterator[bytes] = await backends.in_blobs(
        backends.blobs.read, claims.key, claims.version_id
    )
    first = await backends.in_blobs(next, chunks, None)

    async def stream() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            while True:
                chunk = await backends.in_blobs(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        except BlobUnreadable:
            # Headers are gone already: cutting the connection is the only
            # honest signal left that the body is incomplete.
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await backends.in_blobs(close)

    response = Response(stream(), content_type=claims.mime_type)
    response.headers["Content-Disposition"] = _disposition(claims.filename)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
