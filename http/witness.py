"""``vault witness serve``: our own c2sp.org/tlog-witness, one route on Quart-Trio.

``POST /add-checkpoint`` takes the protocol's body (at most 64 KiB: the
largest a 63-line proof and a signed checkpoint need, with room to spare),
parses it (``AddCheckpointRequest``), and runs the pure ``decide`` inside
the state store's ``check_and_store``, in a worker thread bounded by a
``CapacityLimiter``, so checking the stored size and advancing it is one
atomic step. The outcome's status, content type and body are the answer:
200 with the ``cosignature/v1`` lines, 409 ``text/x.tlog.size`` with the
size the witness last cosigned, and 400/403/404/422 with a one-line plain
text reason, as the spec allows. Any other path or method, and an
over-long body, are plain-text HTTP errors too.

``run`` is the entry point the command line finds through the
``document_vault.server`` entry point named ``witness``: it opens the key
and the database, listens on ``WITNESS_HOST:WITNESS_PORT`` and stops
cleanly (exit 0) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping, Sequence

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from vault.adapters.witness_state import WitnessStateStore, load_or_create_cosigner_key
from vault.domain.cosignature import CosignerKey
from vault.domain.note import Verifier
from vault.domain.witness import (
    TEXT_CONTENT_TYPE,
    AddCheckpointRequest,
    MalformedRequest,
    Outcome,
    Rejected,
    Status,
    WitnessedState,
    decide,
)
from vault.witness_config import WitnessSettings

log = structlog.get_logger("vault.witness")

MAX_BODY = 64 * 1024
WORKER_THREADS = 4
SHUTDOWN_GRACE_SECONDS = 10.0


def create_witness_app(
    logs: Mapping[str, Sequence[Verifier]],
    store: WitnessStateStore,
    cosigners: Sequence[CosignerKey],
    *,
    limiter: trio.CapacityLimiter | None = None,
) -> QuartTrio:
    """The witness's ASGI app over the trusted ``logs``, ``store`` and ``cosigners``."""
    app = QuartTrio("vault_http.witness")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    threads = limiter if limiter is not None else trio.CapacityLimiter(WORKER_THREADS)

    @app.post("/add-checkpoint")
    async def add_checkpoint() -> Response:
        body = await request.get_data(cache=False)
        try:
            parsed = AddCheckpointRequest.parse(body)
        except MalformedRequest as exc:
            return _answer(Rejected(Status.BAD_REQUEST, str(exc)))
        origin = parsed.origin
        timestamp = int(time.time())

        def decide_here(state: WitnessedState | None) -> Outcome:
            return decide(parsed, logs.get(origin), state, cosigners, timestamp)

        outcome = await trio.to_thread.run_sync(
            store.check_and_store, origin, decide_here, limiter=threads
        )
        log.info("add_checkpoint", origin=origin, old_size=parsed.old_size,
                 status=int(outcome.status))
        return _answer(outcome)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        return Response(f"{exc.name}\n", status=code, content_type=TEXT_CONTENT_TYPE)

    return app


def _answer(outcome: Outcome) -> Response:
    return Response(outcome.body, status=int(outcome.status), content_type=outcome.content_type)


def hypercorn_config(settings: WitnessSettings) -> Config:
    config = Config()
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = SHUTDOWN_GRACE_SECONDS
    config.accesslog = None
    config.errorlog = None
    return config


async def serve(
    settings: WitnessSettings,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the key and the state, then answer until SIGTERM/SIGINT."""
    key = await trio.to_thread.run_sync(
        load_or_create_cosigner_key, settings.key_file, settings.name
    )
    store = await trio.to_thread.run_sync(WitnessStateStore, settings.db)
    app = create_witness_app(settings.logs, store, [key])
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, stop)

        async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app, hypercorn_config(settings), shutdown_trigger=stop.wait,
                task_status=task_status,
            )

        binds = await nursery.start(run_http)
        log.info("witness_listening", binds=binds, witness=key.verifier().format(),
                 origins=sorted(settings.logs))
        task_status.started(binds)
        await stop.wait()
        nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_SECONDS + 1
    log.info("witness_stopped")


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            stop.set()
            return


def run(settings: WitnessSettings) -> int:
    trio.run(serve, settings)
    return 0
