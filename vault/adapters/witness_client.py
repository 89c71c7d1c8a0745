"""A blocking c2sp.org/tlog-witness client: submit one checkpoint to one witness.

    POST {URL}/add-checkpoint   text/plain body (``AddCheckpointRequest.format``)
      200  the witness's cosignature lines
      409  text/x.tlog.size: the size the witness last cosigned for this log
      403 / 404 / 422 / 400  refused, with a line saying why

``WitnessClient.add_checkpoint`` returns what the witness said, each answer
as its own type: ``Cosigned`` (the lines, not yet checked: the caller checks
them against the witness's key), ``SizeConflict`` (the witness's size, to
start the proof from) or ``Refused`` (the status and the witness's reason).
No connection, no answer in time, another status or an answer longer than
``MAX_ANSWER_BYTES`` is ``WitnessUnavailable``; httpx's errors go no further.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import httpx

from vault.adapters.http_answers import bounded_exchange
from vault.domain.errors import DependencyUnavailable
from vault.domain.witness import SIZE_CONTENT_TYPE, AddCheckpointRequest

TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 64 * 1024
_REFUSALS = frozenset({400, 403, 404, 422})


class WitnessUnavailable(DependencyUnavailable):
    """The witness could not be reached, or did not answer as the protocol says."""


@attrs.frozen
class Cosigned:
    lines: str
    """The body: one ``cosignature/v1`` line or more, each ending in a newline."""


@attrs.frozen
class SizeConflict:
    size: int


@attrs.frozen
class Refused:
    status: int
    reason: str


Answer = Cosigned | SizeConflict | Refused


class WitnessClient:
    """A client of the witness at ``url`` (its base URL, below which ``add-checkpoint`` is)."""

    def __init__(
        self, url: str, *, timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/add-checkpoint"
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: str) -> Answer:
        body = AddCheckpointRequest(old_size=old_size, proof=tuple(proof), checkpoint=note)
        status, content_type, text = self._post(body.format().encode("utf-8"))
        if status == 200:
            if not text.endswith("\n") or not text.strip():
                raise WitnessUnavailable(f"{self.url} answered 200 without cosignature lines")
            return Cosigned(text)
        if status == 409:
            size = text.strip()
            if not content_type.startswith(SIZE_CONTENT_TYPE) or not size.isdigit():
                raise WitnessUnavailable(f"{self.url} answered 409 without a tree size")
            return SizeConflict(int(size))
        if status in _REFUSALS:
            reason = " ".join(text.split())[:200] or "no reason given"
            return Refused(status, reason)
        raise WitnessUnavailable(f"{self.url} answered HTTP {status}")

    def _post(self, body: bytes) -> tuple[int, str, str]:
        status, content_type, raw = bounded_exchange(
            self._client, "POST", self.url, limit=MAX_ANSWER_BYTES, error=WitnessUnavailable,
            unreachable="cannot reach the witness at", content=body,
            headers={"Content-Type": "text/plain"},
        )
        try:
            return status, content_type, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessUnavailable(f"{self.url} answered text that is not UTF-8") from None
