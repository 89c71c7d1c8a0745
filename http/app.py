"""The Quart-Trio application: routes, request ids, error mapping, metrics."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import structlog
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.access import Authorizer
from actors.system import Vault
from vault.adapters.blobs.signing import UrlSigner
from vault.domain.errors import VaultError

from .body import BoundedHTTPConnection, BoundedRequest
from .dispositions import dispositions_api
from .documents import api
from .freezes import freezes_api
from .identity import IdentityProvider
from .incidents import incidents_api
from .integrity import integrity_api
from .ledger import ledger_api
from .metrics import Metrics
from .operator import operator
from .problems import from_http_exception, from_vault_error, internal_error
from .records import records_api
from .state import AppState
from .upload import uploads

log = structlog.get_logger("vault.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class VaultApp(QuartTrio):
    asgi_http_class = BoundedHTTPConnection
    request_class = BoundedRequest


def create_app(
    vault: Vault,
    *,
    identity: IdentityProvider,
    authorizer: Authorizer,
    signer: UrlSigner | None,
) -> VaultApp:
    here = str(Path(__file__).parent)
    app = VaultApp("vault_http", root_path=here, instance_path=here)
    app.config["MAX_CONTENT_LENGTH"] = None  # the upload route enforces its own limit
    app.config["BODY_TIMEOUT"] = None  # a slow client is paced by TCP, not cut off
    app.config["RESPONSE_TIMEOUT"] = None
    metrics = Metrics(vault.health)
    app.extensions["vault"] = AppState(
        vault=vault, identity=identity, authorizer=authorizer, metrics=metrics, signer=signer
    )
    app.register_blueprint(uploads)
    app.register_blueprint(api)
    app.register_blueprint(ledger_api)
    app.register_blueprint(integrity_api)
    app.register_blueprint(incidents_api)
    app.register_blueprint(freezes_api)
    app.register_blueprint(records_api)
    app.register_blueprint(dispositions_api)
    app.register_blueprint(operator)

    @app.before_request
    async def start_request() -> None:
        sent = request.headers.get("X-Request-ID", "")
        request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.request_id = request_id
        g.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if request.path.startswith("/api/"):
            g.counted = True
            vault.traffic.started()

    @app.after_request
    async def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started")
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.observe(request.method, rule, response.status_code, elapsed)
            if not rule.startswith(("/healthz", "/metrics", "/readyz")):
                log.info(
                    "request_finished",
                    method=request.method,
                    path=request.path,
                    status=response.status_code,
                    duration_ms=round(elapsed * 1000, 2),
                )
        structlog.contextvars.unbind_contextvars("request_id")
        return response

    @app.teardown_request
    async def end_request(_: BaseException | None) -> None:
        # Always run, even when the request was cut short, so the count never leaks.
        if g.pop("counted", False):
            vault.traffic.finished()

    @app.errorhandler(VaultError)
    async def vault_error(exc: VaultError) -> Response:
        if exc.status >= 500:
            log.warning("request_failed", error_code=exc.error_code, detail=exc.detail)
        return from_vault_error(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return from_http_exception(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        if isinstance(exc, trio.Cancelled):  # pragma: no cover - Cancelled is a BaseException
            raise exc
        log.exception("unhandled_error")
        return internal_error()

    return app
