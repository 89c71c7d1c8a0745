"""The actor runtime on real mailboxes, with tiny purpose-built actors.

Every test here is in memory and runs on the autojump clock, so deadlines
and backoff delays are exact virtual timestamps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import uuid4

import attrs
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from actors.runtime import (
    ActorCrashed,
    ActorState,
    Mailbox,
    Reply,
    RestartPolicy,
    ShuttingDown,
    answer,
    ask,
    serve_mailbox,
    supervise,
)
from vault.domain.errors import Busy, DocumentNotFound, VaultError

DEFAULT_POLICY = RestartPolicy()
HANG_SECONDS = 3600
SNAPSHOT_KEYS = {
    "name",
    "state",
    "mailbox",
    "in_flight",
    "processed",
    "failed",
    "restarts",
    "last_error",
    "last_activity_at",
    "started_at",
}


@attrs.frozen
class Job:
    """The one message the tiny actors take: answer with ``value``, or act on it."""

    value: str
    reply: Reply[str]


class Boom(RuntimeError):
    """What a tiny actor raises to crash."""


class Worker:
    """A tiny actor that echoes each job, holding it until ``gate`` opens.

    ``"crash"`` raises ``Boom``; ``"refuse"`` answers ``DocumentNotFound``.
    It counts how many handlers run at once, and records what it handled.
    """

    def __init__(self, *, gated: bool = False) -> None:
        self.gate = trio.Event()
        if not gated:
            self.gate.set()
        self.active = 0
        self.peak = 0
        self.handled: list[str] = []

    async def handle(self, job: Job) -> None:
        with job.reply:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                await self.gate.wait()
                if job.value == "crash":
                    raise Boom("boom")
                self.handled.append(job.value)
                if job.value == "refuse":
                    answer(job.reply, DocumentNotFound(uuid4()))
                else:
                    answer(job.reply, job.value.upper())
            finally:
                self.active -= 1

    def run(self, mailbox: Mailbox[Job], concurrency: int = 1) -> Callable[..., Awaitable[None]]:
        """The actor's loop, as ``supervise`` calls it."""
        return partial(serve_mailbox, mailbox, self.handle, concurrency=concurrency)


@attrs.define
class Outcome:
    """One ``ask`` running in the background: its answer or error, and when it ended."""

    value: Any = None
    error: BaseException | None = None
    ended_at: float | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    async def wait(self) -> None:
        """Wait for the ask to end; a hang fails the test (at once, on the autojump clock)."""
        with trio.fail_after(HANG_SECONDS):
            await self.done.wait()


async def _ask_into(outcome: Outcome, mailbox: Mailbox[Job], value: str, deadline: float) -> None:
    try:
        outcome.value = await ask(mailbox, partial(Job, value), deadline=deadline, returns=str)
    except VaultError as exc:
        outcome.error = exc
    finally:
        outcome.ended_at = trio.current_time()
        outcome.done.set()


async def asked(mailbox: Mailbox[Job], value: str, *, deadline: float = math.inf) -> str:
    """``ask`` for one job; a hang fails the test (at once, on the autojump clock)."""
    with trio.fail_after(HANG_SECONDS):
        return await ask(mailbox, partial(Job, value), deadline=deadline, returns=str)


async def ask_soon(
    nursery: trio.Nursery, mailbox: Mailbox[Job], value: str, *, deadline: float = math.inf
) -> Outcome:
    """Start an ``ask`` and return once everything has settled, so asks queue in order."""
    outcome = Outcome()
    nursery.start_soon(_ask_into, outcome, mailbox, value, deadline)
    await wait_all_tasks_blocked()
    return outcome


async def start_supervised(
    nursery: trio.Nursery,
    mailbox: Mailbox[Job],
    worker: Worker,
    *,
    concurrency: int = 1,
    policy: RestartPolicy = DEFAULT_POLICY,
) -> None:
    await nursery.start(supervise, mailbox, worker.run(mailbox, concurrency), policy)


async def tiny_actor(
    nursery: trio.Nursery, worker: Worker | None = None, *, policy: RestartPolicy = DEFAULT_POLICY
) -> Mailbox[Job]:
    """A supervised ``Worker`` (ungated unless given) behind a mailbox of four."""
    mailbox = Mailbox[Job]("tiny", 4)
    await start_supervised(nursery, mailbox, worker or Worker(), policy=policy)
    return mailbox


def queue_jobs(
    mailbox: Mailbox[Job], values: Sequence[str]
) -> list[trio.MemoryReceiveChannel[Any]]:
    """Put a job per value straight into the mailbox; the channels their answers come on."""
    replies = []
    for value in values:
        reply_send, reply_recv = trio.open_memory_channel[Any](1)
        mailbox.send_channel.send_nowait(Job(value, reply_send))
        replies.append(reply_recv)
    return replies


class TestBackpressure:
    async def test_ask_waits_for_room_and_raises_busy_exactly_at_its_deadline(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """A full mailbox makes the next ask wait, then raise Busy exactly at its deadline."""
        capacity = 3
        mailbox = Mailbox[Job]("tiny", capacity)
        worker = Worker(gated=True)
        await start_supervised(nursery, mailbox, worker)
        accepted = [await ask_soon(nursery, mailbox, f"job{i}") for i in range(capacity + 1)]
        assert mailbox.depth() == capacity
        assert worker.active == 1

        deadline = trio.current_time() + 5
        late = await ask_soon(nursery, mailbox, "late", deadline=deadline)
        assert not late.done.is_set()

        await late.wait()
        assert isinstance(late.error, Busy)
        assert late.ended_at == deadline
        assert not any(outcome.done.is_set() for outcome in accepted)

    async def test_queued_asks_complete_once_the_handler_is_released(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Asks that found room are answered, in order, once the blocked handler moves on."""
        mailbox = Mailbox[Job]("tiny", 2)
        worker = Worker(gated=True)
        await start_supervised(nursery, mailbox, worker)
        accepted = [await ask_soon(nursery, mailbox, f"job{i}") for i in range(3)]
        refused = await ask_soon(nursery, mailbox, "late", deadline=trio.current_time() + 1)
        await refused.wait()

        worker.gate.set()
        for outcome in accepted:
            await outcome.wait()
        assert [outcome.value for outcome in accepted] == ["JOB0", "JOB1", "JOB2"]
        assert worker.handled == ["job0", "job1", "job2"]

    async def test_serve_mailbox_never_runs_more_handlers_than_its_concurrency(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Ten jobs against concurrency three: three run, seven wait in the mailbox."""
        mailbox = Mailbox[Job]("tiny", 16)
        worker = Worker(gated=True)
        await start_supervised(nursery, mailbox, worker, concurrency=3)
        outcomes = [await ask_soon(nursery, mailbox, f"job{i}") for i in range(10)]
        assert worker.active == 3
        assert mailbox.health.in_flight == 3
        assert mailbox.depth() == 7

        worker.gate.set()
        for outcome in outcomes:
            await outcome.wait()
        assert worker.peak == 3
        assert mailbox.health.processed == 10


class TestAnswers:
    @pytest.mark.parametrize(
        ("value", "raised", "restarts", "failed", "processed"),
        [
            pytest.param(
                "refuse", DocumentNotFound, 0, 0, 2,
                id="vault-error-answer-raised-by-ask-is-a-normal-outcome",
            ),
            pytest.param(
                "crash", ActorCrashed, 1, 1, 1, id="crashed-loop-is-restarted-and-runs-again",
            ),
        ],
    )
    async def test_the_actor_runs_on_after_an_error_answer_or_a_crash(
        self,
        nursery: trio.Nursery,
        autojump_clock: MockClock,
        value: str,
        raised: type[Exception],
        restarts: int,
        failed: int,
        processed: int,
    ) -> None:
        """A VaultError answer makes ``ask`` raise that very error with no crash and no
        restart; a crash is ActorCrashed and one restart; either way the next ask succeeds."""
        mailbox = await tiny_actor(nursery)
        with pytest.raises(raised):
            await asked(mailbox, value)
        assert await asked(mailbox, "next") == "NEXT"
        health = mailbox.health
        assert (health.state, health.restarts, health.failed) == (
            ActorState.RUNNING, restarts, failed
        )
        assert health.processed == processed

    async def test_ask_after_the_mailbox_is_closed_raises_shutting_down(
        self, autojump_clock: MockClock
    ) -> None:
        """A closed mailbox refuses new asks with ShuttingDown, which is a Busy."""
        mailbox = Mailbox[Job]("tiny", 4)
        mailbox.close()
        with pytest.raises(ShuttingDown) as caught:
            await asked(mailbox, "late")
        assert isinstance(caught.value, Busy)

    async def test_closing_the_mailbox_lets_serve_mailbox_finish_the_queued_jobs(
        self, autojump_clock: MockClock
    ) -> None:
        """``serve_mailbox`` returns after a close only once every queued job is handled."""
        mailbox = Mailbox[Job]("tiny", 4)
        worker = Worker()
        replies = queue_jobs(mailbox, ("a", "b", "c"))
        mailbox.close()
        with trio.fail_after(HANG_SECONDS):
            await serve_mailbox(mailbox, worker.handle, concurrency=1)
        assert worker.handled == ["a", "b", "c"]
        assert [reply.receive_nowait() for reply in replies] == ["A", "B", "C"]


class TestSupervision:
    async def test_the_state_is_restarting_during_the_backoff(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Between a crash and its restart the actor reports ``restarting``."""
        mailbox = await tiny_actor(nursery, policy=RestartPolicy(backoff_initial=10))
        crashed = await ask_soon(nursery, mailbox, "crash")
        assert isinstance(crashed.error, ActorCrashed)
        assert mailbox.health.state is ActorState.RESTARTING
        assert mailbox.health.restarts == 0

    async def test_last_error_records_type_message_and_time(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """A crash leaves ``last_error`` with the leaf exception's type, message and time."""
        mailbox = await tiny_actor(nursery)
        with pytest.raises(ActorCrashed):
            await asked(mailbox, "crash")
        await wait_all_tasks_blocked()
        error = mailbox.health.last_error
        assert error is not None
        assert (error["type"], error["message"]) == ("Boom", "boom")
        assert datetime.fromisoformat(error["at"]).tzinfo is not None

    @pytest.mark.parametrize(
        ("max_restarts", "backoff_max", "gaps"),
        [
            pytest.param(4, 100, [1, 2, 4, 8], id="delays-grow-exponentially"),
            pytest.param(5, 3, [1, 2, 3, 3, 3], id="delays-are-capped-at-backoff-max"),
        ],
    )
    async def test_backoff_delays_double_up_to_the_cap(
        self, autojump_clock: MockClock, max_restarts: int, backoff_max: float, gaps: list[float]
    ) -> None:
        """Each restart waits twice as long as the one before, and none longer than
        ``backoff_max``."""
        starts: list[float] = []

        async def crash_at_start(*, task_status: trio.TaskStatus[None]) -> None:
            starts.append(trio.current_time())
            raise Boom("boom")

        mailbox = Mailbox[Job]("tiny", 1)
        policy = RestartPolicy(
            max_restarts=max_restarts, window=1000, backoff_initial=1, backoff_max=backoff_max
        )
        with trio.fail_after(HANG_SECONDS):
            await supervise(mailbox, crash_at_start, policy)
        assert [later - earlier for earlier, later in itertools.pairwise(starts)] == gaps

    async def test_queued_messages_survive_a_restart(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Jobs queued behind the one that crashed are handled by the restarted loop."""
        worker = Worker(gated=True)
        mailbox = await tiny_actor(nursery, worker)
        crashed = await ask_soon(nursery, mailbox, "crash")
        queued = [await ask_soon(nursery, mailbox, value) for value in ("a", "b")]
        assert mailbox.depth() == 2

        worker.gate.set()
        for outcome in (crashed, *queued):
            await outcome.wait()
        assert isinstance(crashed.error, ActorCrashed)
        assert [outcome.value for outcome in queued] == ["A", "B"]
        assert mailbox.health.restarts == 1

    async def test_closing_the_mailbox_stops_the_actor_without_a_restart(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """A loop that returns because its mailbox closed is ``stopped``, not restarted."""
        mailbox = Mailbox[Job]("tiny", 4)
        with trio.fail_after(HANG_SECONDS):
            async with trio.open_nursery() as inner:
                await start_supervised(inner, mailbox, Worker())
                last = await ask_soon(nursery, mailbox, "last")
                mailbox.close()
        assert last.value == "LAST"
        assert mailbox.health.state is ActorState.STOPPED
        assert mailbox.health.restarts == 0


class TestRestartBudget:
    WINDOW = 10

    @pytest.mark.parametrize(
        ("pause", "state", "restarts"),
        [
            pytest.param(
                0, ActorState.FAILED, 2, id="too-many-crashes-in-the-window-fail-the-actor",
            ),
            pytest.param(
                WINDOW + 1, ActorState.RUNNING, 3,
                id="crashes-spread-wider-than-the-window-never-exhaust-the-budget",
            ),
        ],
    )
    async def test_only_crashes_within_the_window_count_against_the_budget(
        self,
        nursery: trio.Nursery,
        autojump_clock: MockClock,
        pause: float,
        state: ActorState,
        restarts: int,
    ) -> None:
        """One crash more than ``max_restarts`` within ``window`` seconds leaves the actor
        failed; crashes further apart than the window are each restarted."""
        policy = RestartPolicy(max_restarts=2, window=self.WINDOW, backoff_initial=1)
        mailbox = await tiny_actor(nursery, policy=policy)
        for _ in range(3):
            with pytest.raises(ActorCrashed):
                await asked(mailbox, "crash")
            await trio.sleep(pause)
        await wait_all_tasks_blocked()
        assert mailbox.health.state is state
        assert mailbox.health.restarts == restarts

    async def test_queued_asks_of_a_failed_actor_get_actor_crashed(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Asks queued, or waiting for room, when the actor fails are told so instead of hanging."""
        mailbox = Mailbox[Job]("tiny", 1)
        worker = Worker(gated=True)
        await start_supervised(nursery, mailbox, worker, policy=RestartPolicy(max_restarts=0))
        crashed = await ask_soon(nursery, mailbox, "crash")
        queued = await ask_soon(nursery, mailbox, "queued")
        waiting = await ask_soon(nursery, mailbox, "waiting")
        assert mailbox.depth() == 1
        assert not waiting.done.is_set()

        worker.gate.set()
        for outcome in (crashed, queued, waiting):
            await outcome.wait()
            assert isinstance(outcome.error, ActorCrashed)
        assert mailbox.health.state is ActorState.FAILED
        assert worker.handled == []

    async def test_asks_to_a_failed_actor_fail_fast_with_busy(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Once failed, the actor refuses new asks at once, long before their deadline."""
        mailbox = await tiny_actor(nursery, policy=RestartPolicy(max_restarts=0))
        with pytest.raises(ActorCrashed):
            await asked(mailbox, "crash")
        await wait_all_tasks_blocked()
        asked_at = trio.current_time()
        with pytest.raises(Busy) as caught:
            await asked(mailbox, "late", deadline=asked_at + 30)
        assert not isinstance(caught.value, ShuttingDown)
        assert trio.current_time() == asked_at

    async def test_an_actor_failing_before_it_is_ready_still_reports_started(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """``nursery.start(supervise, ...)`` returns even when the actor never gets ready."""

        async def never_ready(*, task_status: trio.TaskStatus[None]) -> None:
            raise Boom("cannot start")

        mailbox = Mailbox[Job]("tiny", 1)
        policy = RestartPolicy(max_restarts=1, backoff_initial=1)
        await nursery.start(supervise, mailbox, never_ready, policy)
        assert mailbox.health.state is ActorState.FAILED
        assert mailbox.health.last_error is not None
        assert mailbox.health.last_error["message"] == "cannot start"


class TestCancellation:
    async def test_cancelling_supervise_ends_it_promptly_without_a_restart(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Cancellation around ``supervise`` is not a crash: it ends at once, nothing restarts."""
        mailbox = Mailbox[Job]("tiny", 4)
        worker = Worker(gated=True)
        runs = 0

        async def counted_run(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal runs
            runs += 1
            await serve_mailbox(mailbox, worker.handle, concurrency=1, task_status=task_status)

        async with trio.open_nursery() as inner:
            await inner.start(supervise, mailbox, counted_run, RestartPolicy())
            in_flight = await ask_soon(nursery, mailbox, "held")
            assert worker.active == 1
            cancelled_at = trio.current_time()
            inner.cancel_scope.cancel()
        assert trio.current_time() == cancelled_at
        await in_flight.wait()
        assert isinstance(in_flight.error, ActorCrashed)
        health = mailbox.health
        assert (runs, health.restarts, health.failed, health.last_error) == (1, 0, 0, None)
        assert health.state not in (ActorState.RESTARTING, ActorState.FAILED)

    async def test_cancelling_serve_mailbox_with_handlers_in_flight_returns_promptly(
        self, autojump_clock: MockClock
    ) -> None:
        """Handlers cancelled in flight end the loop at once and are not counted as failed."""
        mailbox = Mailbox[Job]("tiny", 4)
        worker = Worker(gated=True)
        replies = queue_jobs(mailbox, ("a", "b", "c"))
        async with trio.open_nursery() as inner:
            await inner.start(partial(serve_mailbox, mailbox, worker.handle, concurrency=3))
            await wait_all_tasks_blocked()
            assert worker.active == 3
            cancelled_at = trio.current_time()
            inner.cancel_scope.cancel()
        assert trio.current_time() == cancelled_at
        health = mailbox.health
        assert (health.in_flight, health.processed, health.failed) == (0, 0, 0)
        for reply in replies:
            with pytest.raises(trio.EndOfChannel):
                reply.receive_nowait()

    async def test_handlers_cancelled_by_a_sibling_crash_are_not_counted_as_failed(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """When one handler crashes, the siblings it takes down are cancelled, not failed."""
        mailbox = Mailbox[Job]("tiny", 4)
        worker = Worker(gated=True)
        await start_supervised(nursery, mailbox, worker, concurrency=2)
        held = await ask_soon(nursery, mailbox, "held")
        worker.gate = trio.Event()  # "held" keeps waiting on the old, never-set gate
        crashed = await ask_soon(nursery, mailbox, "crash")
        worker.gate.set()

        for outcome in (held, crashed):
            await outcome.wait()
            assert isinstance(outcome.error, ActorCrashed)
        assert await asked(mailbox, "after") == "AFTER"
        assert mailbox.health.failed == 1
        assert mailbox.health.restarts == 1


class TestHealthSnapshot:
    async def test_the_snapshot_has_exactly_the_contract_fields(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """A running actor's snapshot carries the contract's fields and no others."""
        mailbox = await tiny_actor(nursery)
        snapshot = mailbox.health.snapshot()
        assert set(snapshot) == SNAPSHOT_KEYS
        assert snapshot["name"] == "tiny"
        assert snapshot["state"] == "running"
        assert snapshot["mailbox"] == {"depth": 0, "capacity": 4}
        assert snapshot["last_error"] is None
        assert snapshot["started_at"] is not None

    async def test_the_snapshot_counts_processed_and_failed_messages(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """Handled messages count as processed, a crashing one as failed."""
        mailbox = await tiny_actor(nursery)
        with pytest.raises(ActorCrashed):
            await asked(mailbox, "crash")
        assert await asked(mailbox, "a") == "A"
        with pytest.raises(DocumentNotFound):
            await asked(mailbox, "refuse")
        assert await asked(mailbox, "b") == "B"

        snapshot = mailbox.health.snapshot()
        assert (snapshot["processed"], snapshot["failed"], snapshot["restarts"]) == (3, 1, 1)
        assert snapshot["in_flight"] == 0
        assert snapshot["last_error"]["type"] == "Boom"
        assert datetime.fromisoformat(snapshot["last_activity_at"]).tzinfo is not None

    async def test_the_snapshot_shows_queued_messages_and_work_in_flight(
        self, nursery: trio.Nursery, autojump_clock: MockClock
    ) -> None:
        """``mailbox.depth`` and ``in_flight`` follow what is waiting and what is running."""
        mailbox = await tiny_actor(nursery, Worker(gated=True))
        for value in ("a", "b", "c"):
            await ask_soon(nursery, mailbox, value)
        snapshot = mailbox.health.snapshot()
        assert snapshot["mailbox"] == {"depth": 2, "capacity": 4}
        assert snapshot["in_flight"] == 1

    def test_a_fresh_actor_reports_starting_with_no_start_time(self) -> None:
        """Before its supervisor starts it, an actor is ``starting`` and has no ``started_at``."""
        snapshot = Mailbox[Job]("tiny", 4).health.snapshot()
        assert snapshot["state"] == "starting"
        assert snapshot["started_at"] is None
        assert (snapshot["processed"], snapshot["failed"], snapshot["restarts"]) == (0, 0, 0)
