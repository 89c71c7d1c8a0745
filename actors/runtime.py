"""The actor runtime: mailboxes, ``ask``, bounded concurrency, supervision, health.

An actor is a named loop that owns one job. Its mailbox is a bounded Trio
memory channel that outlives the loop, so a restart loses only the messages
that were being handled when the loop crashed, never the queued ones.

Backpressure: ``ask`` waits while the mailbox is full and raises ``Busy``
at the caller's deadline; an actor takes a new message only while it is
below its concurrency bound, so a slow actor fills its mailbox and callers
feel it.

Errors: a handler answers a ``VaultError`` through the message's reply
channel. Any other exception crashes the loop; the supervisor
(``one_for_one``: each actor restarts alone) restarts it with exponential
backoff until its restart budget is spent, then marks it ``failed``.

Cancellation: never swallowed. Broad handlers here catch ``Exception``,
and an exception group that contains ``trio.Cancelled`` is a
``BaseExceptionGroup``, which passes through them.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, TypeAlias, TypeVar

import attrs
import structlog
import trio

from vault.domain.errors import Busy, VaultError
from vault.domain.models import iso_response, utcnow

log = structlog.get_logger("vault.actors")

M = TypeVar("M")
R = TypeVar("R")

Reply: TypeAlias = trio.MemorySendChannel[R | VaultError]
"""A request's reply channel (size 1): its answer of type ``R``, or the error it ended in."""


class ActorState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    DISABLED = "disabled"


HEALTHY_STATES = frozenset({ActorState.RUNNING, ActorState.DISABLED})


class ActorCrashed(VaultError):
    """The actor handling a request crashed before answering it."""

    def __init__(self, actor: str) -> None:
        super().__init__(f"The {actor} actor failed while handling the request")


class ShuttingDown(Busy):
    """The actor's mailbox is closed: the service is stopping."""


@attrs.define
class ActorHealth:
    """Counters behind an actor's health snapshot; only its own actor writes them."""

    name: str
    capacity: int
    depth: Callable[[], int] = attrs.field(default=lambda: 0, repr=False)
    state: ActorState = ActorState.STARTING
    in_flight: int = 0
    processed: int = 0
    failed: int = 0
    restarts: int = 0
    last_error: dict[str, str] | None = None
    last_activity_at: datetime | None = None
    started_at: datetime | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    live: Callable[[], dict[str, Any]] = attrs.field(default=dict, repr=False)
    """Figures read when the snapshot is taken (the ledger's witnesses and anchors)."""

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY_STATES

    def record_error(self, exc: BaseException) -> None:
        leaf = _first_leaf(exc)
        self.record_failure(type(leaf).__name__, str(leaf))

    def record_failure(self, kind: str, message: str) -> None:
        """Set ``last_error`` for a failure that is not (or not only) an exception."""
        self.last_error = {
            "type": kind,
            "message": message[:500],
            "at": iso_response(utcnow()) or "",
        }

    def touch(self) -> None:
        self.last_activity_at = utcnow()

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "state": self.state.value,
            "mailbox": {"depth": self.depth(), "capacity": self.capacity},
            "in_flight": self.in_flight,
            "processed": self.processed,
            "failed": self.failed,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_activity_at": iso_response(self.last_activity_at),
            "started_at": iso_response(self.started_at),
        }
        out.update(self.extra)
        out.update(self.live())
        return out


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class Mailbox(Generic[M]):
    """A bounded channel of messages for one actor, with its health record."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.send_channel, self.receive_channel = trio.open_memory_channel[M](capacity)
        self.health = ActorHealth(name=name, capacity=capacity, depth=self.depth)

    def depth(self) -> int:
        return int(self.receive_channel.statistics().current_buffer_used)

    async def send(self, msg: M, *, deadline: float) -> None:
        """Put ``msg`` in the mailbox, waiting for room until ``deadline``.

        Raises ``Busy`` at the deadline, ``ShuttingDown`` once the mailbox is
        closed, and ``Busy`` at once when the actor has failed for good.
        """
        if self.health.state is ActorState.FAILED:
            raise Busy(self.name)
        with trio.move_on_at(deadline):
            try:
                await self.send_channel.send(msg)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ShuttingDown(self.name) from None
            return
        raise Busy(self.name)

    def tell_nowait(self, msg: M) -> bool:
        """Send without waiting; False when the mailbox is full or closed."""
        try:
            self.send_channel.send_nowait(msg)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def close(self) -> None:
        """No new messages; the actor finishes the queued ones and stops."""
        self.send_channel.close()


async def ask(
    mailbox: Mailbox[M],
    make: Callable[[Reply[R]], M],
    *,
    deadline: float,
    returns: type[R],
) -> R:
    """Send the message ``make(reply)`` and wait for its answer, a ``returns``.

    ``returns`` names the answer's type, so the type checker holds both ends
    to it: ``make`` must build a message whose reply carries that type, and
    the caller gets that type back. An answer of another type is the
    actor's bug and raises ``TypeError``.

    The deadline bounds only the wait for mailbox room: once the actor holds
    the message, the caller waits for the answer (uploads may take a while).
    A ``VaultError`` answer is raised here.
    """
    reply_send, reply_recv = trio.open_memory_channel[R | VaultError](1)
    with reply_recv:
        await mailbox.send(make(reply_send), deadline=deadline)
        try:
            result = await reply_recv.receive()
        except trio.EndOfChannel:
            raise ActorCrashed(mailbox.name) from None
    if isinstance(result, VaultError):
        raise result
    if not isinstance(result, returns):
        raise TypeError(
            f"the {mailbox.name} actor answered {type(result).__name__}, not {returns.__name__}"
        )
    return result


async def respond(reply: Reply[R], work: Awaitable[R]) -> None:
    """Answer ``reply`` with what ``work`` returns, or with the ``VaultError`` it raised.

    The reply channel is closed afterwards, whatever happened, so an asker
    whose request crashed the handler gets ``ActorCrashed`` instead of waiting.
    """
    with reply:
        try:
            value = await work
        except VaultError as exc:
            answer(reply, exc)
        else:
            answer(reply, value)


def answer(reply: Reply[R], value: R | VaultError) -> None:
    """Answer a request once; a caller that has gone away is not an error."""
    try:
        reply.send_nowait(value)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
        pass


async def serve_mailbox(
    mailbox: Mailbox[M],
    handle: Callable[[M], Awaitable[None]],
    *,
    concurrency: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``handle`` on each message, at most ``concurrency`` at a time.

    Backpressure: a new message is taken only when a slot is free, so the
    mailbox fills while the actor is saturated. Returns when the mailbox is
    closed and every message taken has been handled.
    """
    health = mailbox.health
    slots = trio.Semaphore(concurrency)

    async def one(msg: M) -> None:
        health.in_flight += 1
        try:
            await handle(msg)
            health.processed += 1
        except Exception:
            health.failed += 1
            raise
        finally:
            health.in_flight -= 1
            health.touch()
            slots.release()

    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            await slots.acquire()
            try:
                msg = await mailbox.receive_channel.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                slots.release()
                break
            nursery.start_soon(one, msg)


@attrs.frozen
class RestartPolicy:
    """One-for-one restarts: ``max_restarts`` within ``window`` seconds, then failed."""

    max_restarts: int = 5
    window: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_initial * math.pow(2, max(0, attempt - 1)))


RunFn = Callable[..., Awaitable[None]]


async def supervise(
    mailbox: Mailbox[Any],
    run: RunFn,
    policy: RestartPolicy,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep one actor running (strategy: one_for_one).

    ``run(task_status=...)`` is the actor's loop; it signals readiness with
    ``task_status.started()``. The first readiness (or the first failure for
    good) is reported to our own ``task_status``, so ``nursery.start`` on
    this returns once the actor can take messages.
    """
    health = mailbox.health
    recent: deque[float] = deque()
    reported = False
    attempt = 0
    while True:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(run)
                health.state = ActorState.RUNNING
                health.started_at = health.started_at or utcnow()
                if not reported:
                    task_status.started()
                    reported = True
            health.state = ActorState.STOPPED
            log.info("actor_stopped", actor=health.name)
            return
        except Exception as exc:
            health.record_error(exc)
            now = trio.current_time()
            recent.append(now)
            while recent and now - recent[0] > policy.window:
                recent.popleft()
            if len(recent) > policy.max_restarts:
                health.state = ActorState.FAILED
                log.error("actor_failed", actor=health.name, restarts=health.restarts,
                          error=health.last_error)
                _refuse_queued(mailbox)
                if not reported:
                    task_status.started()
                return
            attempt = len(recent)
            health.state = ActorState.RESTARTING
            delay = policy.backoff(attempt)
            log.warning("actor_crashed", actor=health.name, restart_in=delay,
                        error=health.last_error)
            await trio.sleep(delay)
            health.restarts += 1


def _refuse_queued(mailbox: Mailbox[Any]) -> None:
    """Close every channel a queued message carries, so no one waits on it.

    Its asker gets ``ActorCrashed``; whoever feeds it (an upload's chunks
    and form) gets ``BrokenResourceError`` instead of blocking forever.
    """
    while True:
        try:
            msg = mailbox.receive_channel.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        if not attrs.has(type(msg)):
            continue
        for field in attrs.fields(type(msg)):
            value = getattr(msg, field.name)
            if isinstance(value, trio.MemorySendChannel | trio.MemoryReceiveChannel):
                value.close()
