"""The sweep and client traffic: it takes its documents in a lull between requests, and under
traffic that never pauses it still goes on, one document per ``Sizing.sweep_lull``."""

from __future__ import annotations

from pathlib import Path

import trio
from trio.testing import wait_all_tasks_blocked

from actors.system import Sizing
from actors.traffic import Traffic
from tests.actors.sweep_helpers import gates, idle, running, seeded, sweep_status
from tests.polling import eventually
from tests.support import test_settings
from vault.config import Settings

PATIENT = Sizing(sweep_lull=60.0)
"""Longer than any test: only the end of the traffic lets the sweep go."""


def sweep_on(tmp_path: Path) -> Settings:
    return test_settings(tmp_path / "data", integrity_sweep_period_hours=1.0,
                         integrity_sweep_max_mb_per_second=1000.0)


class TestTraffic:
    async def test_a_lull_comes_when_the_last_request_ends(self) -> None:
        traffic = Traffic()
        assert await traffic.lull(0)  # nothing in flight: at once
        traffic.started()
        traffic.started()
        assert traffic.in_flight == 2
        assert not await traffic.lull(0.01)
        got: list[bool] = []
        async with trio.open_nursery() as nursery:
            async def wait() -> None:
                got.append(await traffic.lull(60))

            nursery.start_soon(wait)
            await wait_all_tasks_blocked()
            traffic.finished()
            await wait_all_tasks_blocked()
            assert got == []  # one still in flight
            traffic.finished()
        assert got == [True] and traffic.in_flight == 0

    async def test_a_new_request_after_a_lull_needs_a_new_one(self) -> None:
        traffic = Traffic()
        traffic.started()
        traffic.finished()
        traffic.started()
        assert not await traffic.lull(0.01)

    def test_finishing_more_than_started_never_goes_below_zero(self) -> None:
        traffic = Traffic()
        traffic.finished()
        assert traffic.in_flight == 0


async def test_the_sweep_waits_while_a_request_is_in_flight(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    settings = sweep_on(tmp_path)
    docs = await seeded(settings, nursery, [2000, 2000])
    traffic = Traffic()
    traffic.started()
    async with running(settings, nursery, sizing=PATIENT, gated=True, traffic=traffic) as vault:
        await idle(vault)
        assert gates(vault).keys_read() == []  # settled, and nothing read
        assert sweep_status(vault)["documents"] == 0
        traffic.finished()
        await eventually(lambda: sweep_status(vault)["documents"] == 2, "both swept")
        assert gates(vault).keys_read() == [d.storage_key for d in docs]
        assert sweep_status(vault)["lulls_missed"] == 0


async def test_traffic_that_never_pauses_still_gets_swept(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    settings = sweep_on(tmp_path)
    await seeded(settings, nursery, [2000, 2000, 2000])
    traffic = Traffic()
    traffic.started()
    async with running(settings, nursery, sizing=Sizing(sweep_lull=0.05),
                       traffic=traffic) as vault:
        await eventually(lambda: sweep_status(vault)["documents"] == 3, "all three swept")
        assert sweep_status(vault)["lulls_missed"] >= 3
    assert traffic.in_flight == 1
