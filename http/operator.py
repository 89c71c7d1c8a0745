"""Routes with no identity: health, readiness, metrics, the API description,
and the signed blob URLs of the embedded store (the token is the credential)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

import orjson
import trio
import yaml
from quart import Blueprint, Response

from vault.adapters.blobs.signing import InvalidToken
from vault.domain.errors import BlobUnreadable, Forbidden, VaultError
from vault.domain.validation import content_disposition

from .metrics import CONTENT_TYPE
from .problems import problem
from .state import state

operator = Blueprint("operator", __name__)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


@operator.get("/healthz")
async def healthz() -> Response:
    actors = state().vault.health()
    healthy = all(h.healthy for h in actors)
    states = {h.name: h.state.value for h in actors}
    return _json(
        {"status": "ok" if healthy else "degraded", "actors": states}, 200 if healthy else 503
    )


@operator.get("/healthz/actors")
async def healthz_actors() -> Response:
    return _json({"actors": [h.snapshot() for h in state().vault.health()]})


@operator.get("/healthz/actors/<name>")
async def healthz_actor(name: str) -> Response:
    health = state().vault.health_of(name)
    if health is None:
        return problem(404, "Not Found", f"No actor named {name!r}", "NOT_FOUND")
    return _json(health.snapshot(), 200 if health.healthy else 503)


READY_PROBE_SECONDS = 5.0


async def _probe(check: Callable[[], None], limiter: trio.CapacityLimiter) -> str:
    """"ok", or why not; a probe that hangs is abandoned after READY_PROBE_SECONDS."""
    try:
        with trio.fail_after(READY_PROBE_SECONDS):
            await trio.to_thread.run_sync(check, limiter=limiter, abandon_on_cancel=True)
    except VaultError as exc:
        return exc.detail
    except trio.TooSlowError:
        return f"no answer within {READY_PROBE_SECONDS:g} s"
    return "ok"


@operator.get("/readyz")
async def readyz() -> Response:
    vault = state().vault
    backends = vault.backends
    checks = {
        "database": await _probe(backends.store.ping, backends.db_limiter),
        "blob_store": await _probe(backends.blobs.ping, backends.blob_limiter),
    }
    publishers = [vault.audit_publisher.mailbox.health, vault.alerter.mailbox.health]
    failed = [h.name for h in publishers if not h.healthy]
    checks["queues"] = "ok" if not failed else f"publisher not running: {', '.join(failed)}"
    ready = all(v == "ok" for v in checks.values())
    return _json(
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
    response.headers["Content-Disposition"] = content_disposition(claims.filename)
    response.headers["Cache-Control"] = "private, no-store"
    return response
