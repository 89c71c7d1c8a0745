"""Bounded polling: wait for a condition that nothing signals, and say what never came.

Prefer awaiting the thing itself (a ``trio.Event``, a channel, a process's
exit). Poll only where nothing can be awaited: state owned by a worker
thread, another process, moto or a database. Both forms have the same
semantics:

* ``check()`` is called at once, then again every ``interval`` seconds;
* the first *truthy* answer is returned (so a check can hand back what it
  found, e.g. a health snapshot), and a falsy one (``False``, ``None``, an
  empty list, ``0``) means "not yet";
* an exception raised by ``check`` is not swallowed: it ends the wait (raise
  ``pytest.fail`` from a check to stop early on a condition that can never
  come true, such as a server process that has exited);
* once ``within`` seconds have gone without a truthy answer, ``TimedOut``
  (an ``AssertionError``) is raised, naming ``what`` was awaited, the last
  answer, and whatever ``describe()`` adds (a server's log tail, say).

``eventually`` is for Trio tests: ``check`` may be a plain function or a
coroutine function, and with ``in_thread=True`` a plain ``check`` that
blocks (boto3, sqlite3, psycopg) runs in a worker thread. The waits between
checks are ``trio.sleep``, so other tasks run meanwhile. Its clock is Trio's:
do not poll on the autojump clock (it would jump straight to the timeout);
await the event there instead.

``eventually_sync`` is the same for synchronous code (system tests driving
another process, threads); it sleeps with ``time.sleep`` on the monotonic
clock.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import trio

T = TypeVar("T")

TIMEOUT = 10.0
"""Default bound on the whole wait, in seconds."""
INTERVAL = 0.01
"""Default pause between two checks, in seconds."""

__all__ = ["INTERVAL", "TIMEOUT", "TimedOut", "eventually", "eventually_sync"]


class TimedOut(AssertionError):
    """A condition awaited with ``eventually`` did not come true within its bound."""


def _timed_out(
    what: str, within: float, last: object, describe: Callable[[], str] | None
) -> NoReturn:
    message = f"timed out after {within} s waiting for {what} (last check: {last!r})"
    if describe is not None:
        message += "\n" + describe()
    raise TimedOut(message)


async def eventually(
    check: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    what: str,
    *,
    within: float = TIMEOUT,
    interval: float = INTERVAL,
    in_thread: bool = False,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` every ``interval`` seconds until it answers something truthy; return it.

    ``what`` completes "waiting for ..." in the failure message. ``check`` may be
    async; with ``in_thread`` a blocking sync ``check`` runs in a worker thread.
    Raises ``TimedOut`` after ``within`` seconds.
    """
    deadline = trio.current_time() + within
    while True:
        if in_thread:
            answer = await trio.to_thread.run_sync(check)
        else:
            answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer  # type: ignore[return-value]
        if trio.current_time() >= deadline:
            _timed_out(what, within, answer, describe)
        await trio.sleep(interval)


def eventually_sync(
    check: Callable[[], T | None],
    what: str,
    *,
    within: float = TIMEOUT,
    interval: float = INTERVAL,
    describe: Callable[[], str] | None = None,
) -> T:
    """``eventually`` for synchronous code: the same contract, on ``time.monotonic``."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            _timed_out(what, within, answer, describe)
        time.sleep(interval)
