"""``vault serve``: the composition root and the process's life cycle.

Start: adapters are opened and the schema applied, every actor is started
(``nursery.start``), the start-up sweep of orphan blobs begins in the
background (``actors.housekeeping``: it reads its clock here, then works
in worker threads while the service runs), and only then does hypercorn
bind the port; the sweep never delays it.

Stop (SIGTERM or SIGINT): the sweep, if still running, is cancelled (it
stops after its current call to a store); hypercorn stops accepting and
lets in-flight requests finish within ``SHUTDOWN_GRACE_SECONDS``; then the
actors are stopped in order (producers finish, publishers drain the
outbox) within what is left of the grace period; then whatever remains is
cancelled and the process exits 0. The signal never cancels the nursery
directly.
"""

from __future__ import annotations

import signal

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from actors.access import ServiceAuthorizer
from actors.deps import Backends
from actors.housekeeping import run_orphan_sweep
from actors.records import require_object_lock
from actors.system import Sizing, authorizer_for, run_vault
from vault.adapters.blobs.signing import UrlSigner
from vault.config import Settings
from vault.domain.errors import DependencyUnavailable
from vault.wiring import open_adapters

from .app import create_app
from .identity import identity_for

log = structlog.get_logger("vault.serve")


def build_backends(settings: Settings) -> tuple[Backends, UrlSigner | None]:
    """The adapters the configuration asks for, ready for the actors. Blocks."""
    adapters = open_adapters(settings)
    backends = Backends(
        settings=settings, store=adapters.store, blobs=adapters.blobs, sinks=adapters.sinks,
        ledger_key=adapters.ledger_key, log_mirror=adapters.log_mirror,
    )
    return backends, adapters.signer


class ListenFailed(DependencyUnavailable):
    """``HOST:PORT`` cannot be bound (in use, or not permitted)."""


def check_listen(settings: Settings) -> None:
    """Fail fast, in one line, when ``HOST:PORT`` cannot be bound.

    Hypercorn binds only once every actor runs, and its bind error surfaces
    as nested exception groups. Binding once here, and closing at once,
    reports the usual causes clearly before anything starts.
    """
    try:
        sockets = hypercorn_config(settings).create_sockets()
    except OSError as exc:
        raise ListenFailed(
            f"cannot listen on {settings.host}:{settings.port} (HOST, PORT): "
            f"{exc.strerror or exc}"
        ) from None
    for sock in sockets.insecure_sockets:
        sock.close()


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 75  # above typical load balancer idle timeouts
    return config


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``shutdown_trigger`` is set, or SIGTERM/SIGINT arrives."""
    stop = shutdown_trigger if shutdown_trigger is not None else trio.Event()
    sizing = Sizing()
    identity = identity_for(settings)
    check_listen(settings)
    backends, signer = await trio.to_thread.run_sync(build_backends, settings)
    await trio.to_thread.run_sync(require_object_lock, backends)
    authorizer = authorizer_for(settings, sizing)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, stop)
            vault = await nursery.start(run_vault, backends, sizing)
            sweep = await nursery.start(run_orphan_sweep, backends)
            app = create_app(
                vault,
                identity=identity,
                authorizer=authorizer,
                signer=signer,
            )
            http_done = trio.Event()

            async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await hypercorn_serve(
                        app, hypercorn_config(settings), shutdown_trigger=stop.wait,
                        task_status=task_status,
                    )
                finally:
                    http_done.set()

            binds = await nursery.start(run_http)
            log.info("vault_listening", binds=binds, environment=settings.environment,
                     database=settings.effective_database_url.split("://")[0],
                     blob_store=backends.blobs.bucket)
            task_status.started(binds)
            await stop.wait()
            stopped_at = trio.current_time()
            log.info("shutdown_started", grace_seconds=settings.shutdown_grace_seconds)
            sweep.cancel()
            # hypercorn returns once in-flight requests are done (or its grace ends);
            # wait for that before stopping the actors they may still be using.
            with trio.move_on_after(settings.shutdown_grace_seconds + 1):
                await http_done.wait()
            remaining = settings.shutdown_grace_seconds - (trio.current_time() - stopped_at)
            await vault.stop(max(remaining, 1.0))
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(backends.store.close)
        if isinstance(authorizer, ServiceAuthorizer):
            await trio.to_thread.run_sync(authorizer.close)
        log.info("vault_stopped")


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal_received", signal=signal.Signals(signum).name)
            stop.set()
            return


def run(settings: Settings) -> int:
    trio.run(serve, settings)
    return 0
