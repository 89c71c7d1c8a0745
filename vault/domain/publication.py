"""What the log's checkpoints become outside the vault: cosigned, timestamped, anchored.

A signed checkpoint is *published* once ``quorum`` of the configured
witnesses cosigned it (``published_note``: the signed note with their
``cosignature/v1`` lines appended, in the configured order); with no
witness configured, the latest signed checkpoint is the published one.

An *anchor* is a job before it is a proof: ``AnchorJob`` is written when a
checkpoint is due (``anchor_due``) and kept until the timestamp authority or
the chain has answered for it, so a failure or a restart never loses the
checkpoint to anchor. ``StoredAnchor`` is a finished one, with the
checkpoint note it anchors (the digest is SHA-256 of that note's text).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import attrs

MAX_BACKOFF_SECONDS = 300.0
"""The longest wait between two attempts at one destination."""


class AnchorKind(enum.StrEnum):
    RFC3161 = "rfc3161"
    EVM = "evm"


class AnchorState(enum.StrEnum):
    PENDING = "pending"
    """Nothing sent yet (or the chain dropped what was sent): send it."""
    SENT = "sent"
    """A transaction is on its way: follow it to its confirmations."""
    DONE = "done"


@attrs.frozen
class PublishedCheckpoint:
    """A checkpoint that met the witness quorum, as served: the note with the cosignatures."""

    size: int
    note: str
    published_at: datetime


@attrs.frozen
class AnchorJob:
    """A checkpoint to timestamp or anchor, and how far that has got."""

    kind: AnchorKind
    size: int
    state: AnchorState
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None
    tx_hash: str | None = None
    nonce: int | None = None
    raw_tx: str | None = None


@attrs.frozen
class StoredAnchor:
    """A finished anchor: the checkpoint's note and the authority's answer for it."""

    kind: AnchorKind
    size: int
    note: str
    anchored_at: datetime
    """The token's genTime, or when the transaction reached its confirmations."""
    token: bytes | None = None
    chain_id: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None


def published_note(note: str, lines: Iterable[str]) -> str:
    """The signed ``note`` with cosignature ``lines`` (each ending in a newline) appended."""
    if not note.endswith("\n"):
        raise ValueError("a signed note ends with a newline")
    extra = "".join(lines)
    if extra and not extra.endswith("\n"):
        raise ValueError("cosignature lines end with a newline")
    return note + extra


def quorum_lines(
    cosignatures: Mapping[str, str], witnesses: Iterable[str], quorum: int
) -> list[str] | None:
    """The cosignature lines of the listed ``witnesses`` that cosigned, if ``quorum`` did."""
    lines = [cosignatures[w] for w in witnesses if w in cosignatures]
    return lines if len(lines) >= quorum else None


def anchor_due(
    last: AnchorJob | None, latest_size: int, now: datetime, interval: timedelta
) -> bool:
    """Whether a checkpoint of ``latest_size`` should be anchored now.

    At most one anchor a kind every ``interval``, and only when the tree grew
    past the last one anchored.
    """
    if latest_size < 1:
        return False
    if last is None:
        return True
    return latest_size > last.size and now - last.created_at >= interval


def backoff(attempts: int, base: float = 1.0) -> float:
    """Seconds to wait after ``attempts`` failures in a row: 1, 2, 4 … capped at 300."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempts - 1)))
