"""Continuous integrity: which documents the sweep re-verifies, and what coverage means.

Every document, archived ones included (they are still retained records),
is to be re-verified at least once a ``period``. The sweep takes a document
once ``SWEEP_LEAD`` of the period is left before it would be overdue (so a
steady sweep keeps ``overdue`` at zero), never-verified ones first, then the
oldest ``hash_verified_at``; a document is *current* when verified within
the period, *overdue* when verified before it, *never* when not verified
at all. ``mismatched`` counts documents whose last verification failed,
whatever their age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

SWEEP_LEAD = 0.1
"""The share of the period left when the sweep takes a document again."""
SWEEP_REASON = "scheduled_sweep"
"""``details.reason`` of a sweep's verification events."""


def sweep_cutoff(now: datetime, period: timedelta) -> datetime:
    """Documents last verified before this are due for the sweep."""
    return now - period * (1 - SWEEP_LEAD)


def period_cutoff(now: datetime, period: timedelta) -> datetime:
    """Documents last verified before this are overdue."""
    return now - period


@attrs.frozen
class Coverage:
    """How much of the vault was re-verified within the period, as of ``at``."""

    at: datetime
    period: timedelta
    documents: int
    verified_within_period: int
    overdue: int
    never_verified: int
    mismatched: int
    oldest_verification_at: datetime | None

    @property
    def oldest_age_seconds(self) -> float | None:
        if self.oldest_verification_at is None:
            return None
        return max(0.0, (self.at - self.oldest_verification_at).total_seconds())


BUSY_SHARE = 0.25
"""The most of its time the sweep spends verifying: after a document that
took t seconds it rests at least 3t, so on a small machine it leaves client
requests three quarters of what it could take (small documents are bound
by per-document work, not by the byte budget)."""


class Pace:
    """How long to rest after one document: its bytes' cost, and the busy share.

    At most ``bytes_per_second`` on average, with no burst beyond one read,
    and busy at most ``busy_share`` of the time.
    """

    def __init__(self, bytes_per_second: float, busy_share: float = BUSY_SHARE) -> None:
        if bytes_per_second <= 0:
            raise ValueError("a sweep's pace must be positive")
        if not 0 < busy_share <= 1:
            raise ValueError("a busy share is above 0 and at most 1")
        self.bytes_per_second = bytes_per_second
        self.busy_share = busy_share

    def delay(self, read: int, took: float) -> float:
        by_bytes = read / self.bytes_per_second - took
        by_share = took * (1 / self.busy_share - 1)
        return max(0.0, by_bytes, by_share)
