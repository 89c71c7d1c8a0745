"""Client requests in flight, so background work can wait for a lull.

The HTTP layer counts each ``/api/`` request from its start to its end
(``started`` / ``finished``); the integrity sweep asks for a ``lull``
before each document, so on a busy service it takes its documents between
requests rather than in the middle of them. A lull is waited for at most
``within`` seconds: under traffic that never pauses the sweep still goes
on, one document per wait.
"""

from __future__ import annotations

import trio


class Traffic:
    def __init__(self) -> None:
        self.in_flight = 0
        self._quiet = trio.Event()
        self._quiet.set()

    def started(self) -> None:
        self.in_flight += 1
        if self._quiet.is_set():
            self._quiet = trio.Event()

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            self._quiet.set()

    async def lull(self, within: float) -> bool:
        """Return once no request is in flight (True), or after ``within`` seconds (False)."""
        if self.in_flight == 0:
            await trio.lowlevel.checkpoint()
            return True
        with trio.move_on_after(within):
            await self._quiet.wait()
            return True
        return False
