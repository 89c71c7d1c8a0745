"""Retention policies per document type: how long the vault must keep a document (SEC 17a-4 style).

A policy belongs to a document type and is versioned; ``PUT
/api/v1/retention-policies/{document_type}`` adds the next version. A
policy applies to the documents of its type uploaded after it: each records
the version it was uploaded under and its ``retain_until``, the upload time
plus the policy's period (``retain_until``).

A new version may lengthen, never shorten. It is refused with 409
``RETENTION_CANNOT_SHORTEN`` when its period would end earlier than the
current version's for a document uploaded on any day (``check_successor``
compares them over a whole 400-year Gregorian cycle, so P365D is shorter
than P1Y, and P1461D longer than P4Y around 2100), or when it weakens the
mode. Once accepted it moves later the ``retain_until`` of every existing
document of the type that it keeps longer (``lengthened``); no
``retain_until`` ever moves earlier.

The modes are S3 Object Lock's. ``compliance``: nobody, not even an
administrator or the account's root user, can shorten or remove the
retention before it ends. ``governance``: users with a special permission
can bypass it (shorten it or delete the object); everyone else is held.
Going from governance to compliance is allowed, the reverse is not.

``on_expiry`` says what happens once ``retain_until`` has passed:
``review`` puts the document before a records officer, who decides;
``dispose`` lets the vault dispose of it (unless a legal hold covers it). It
may change freely between versions.

A period is an ISO 8601 duration of calendar units only (``P6Y``,
``P1Y6M``, ``P10W``, ``P30D``, ``P2Y3M4W5D``), at most 100 years. Years
and months are added first, clamping the day to the month's last
(2024-02-29 + P1Y = 2025-02-28), then weeks and days.

Pure: no clock is read here; every moment is handed in.
"""

from __future__ import annotations

import calendar
import enum
import re
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from uuid import UUID

import attrs

from vault.domain.errors import InvalidRequest, VaultError
from vault.domain.models import DocumentType

MAX_PERIOD_CHARS = 32
MAX_PERIOD_MONTHS = 1200
"""100 years, counted in years and months."""

_LIMIT_START = datetime(2000, 1, 1, tzinfo=UTC)
_LIMIT_END = datetime(2100, 1, 1, tzinfo=UTC)
"""A period must not take 2000-01-01 beyond 2100-01-01 (100 years, the longest ones)."""

_PERIOD = re.compile(r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?")
_TIME_PART = re.compile(r"P[0-9YMWD]*T")
_EXAMPLES = "such as P6Y, P1Y6M, P10W or P30D"


class RetentionMode(enum.StrEnum):
    COMPLIANCE = "compliance"
    GOVERNANCE = "governance"


class OnExpiry(enum.StrEnum):
    REVIEW = "review"
    DISPOSE = "dispose"


@attrs.frozen
class Period:
    """An ISO 8601 duration of calendar units only; ``parse`` is what checks one."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: object, field: str = "period") -> Period:
        """``text`` as a period, or a 422 naming ``field`` that says what is wrong."""
        if not isinstance(text, str):
            raise _invalid(field, f"must be an ISO 8601 duration string, {_EXAMPLES}")
        if len(text) > MAX_PERIOD_CHARS:
            raise _invalid(field, f"must be at most {MAX_PERIOD_CHARS} characters")
        if _TIME_PART.match(text):
            raise _invalid(
                field,
                "retention is counted in years, months, weeks or days; "
                "a time part (PT..., hours, minutes, seconds) is not allowed",
            )
        found = _PERIOD.fullmatch(text)
        if found is None:
            raise _invalid(
                field,
                "must be an ISO 8601 duration of whole, non-negative years (Y), months (M), "
                f"weeks (W) or days (D), in upper case, in that order, {_EXAMPLES}",
            )
        if all(unit is None for unit in found.groups()):
            raise _invalid(field, f"must name at least one unit, {_EXAMPLES}")
        years, months, weeks, days = (int(unit or 0) for unit in found.groups())
        period = cls(years=years, months=months, weeks=weeks, days=days)
        if period.total_months == 0 and period.total_days == 0:
            raise _invalid(field, "must not be zero")
        if period.total_months > MAX_PERIOD_MONTHS or not period._within(_LIMIT_START, _LIMIT_END):
            raise _invalid(field, "must be at most 100 years (P100Y)")
        return period

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    @property
    def total_days(self) -> int:
        return self.weeks * 7 + self.days

    def text(self) -> str:
        """The canonical ISO form: units in Y M W D order, zero units left out (zero: P0D)."""
        units = zip((self.years, self.months, self.weeks, self.days), "YMWD", strict=True)
        body = "".join(f"{count}{unit}" for count, unit in units if count)
        return "P" + (body or "0D")

    def after(self, start: datetime) -> datetime:
        """``start`` plus the period: years and months (the day clamped to the month's last),
        then weeks and days; time of day and tzinfo kept. ``start`` must be aware."""
        if start.utcoffset() is None:
            raise ValueError(f"a retention start must be timezone-aware, got {start!r}")
        month_index = start.month - 1 + self.total_months
        year, month = start.year + month_index // 12, month_index % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day) + timedelta(days=self.total_days)

    def _within(self, start: datetime, end: datetime) -> bool:
        try:
            return self.after(start) <= end
        except (OverflowError, ValueError):  # beyond year 9999: far beyond the limit
            return False


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest.field("body", field, message)


@attrs.frozen
class PolicyRequest:
    """What ``PUT /api/v1/retention-policies/{document_type}`` asks for."""

    period: Period
    mode: RetentionMode
    on_expiry: OnExpiry


_POLICY_FIELDS = ("period", "mode", "on_expiry")
_E = TypeVar("_E", RetentionMode, OnExpiry)


def parse_policy(body: object) -> PolicyRequest:
    """The decoded JSON body of a policy PUT; all three fields required, no others."""
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    for key in body:
        if key not in _POLICY_FIELDS:
            raise _invalid(str(key), "is not a field of this request")
    for name in _POLICY_FIELDS:
        if name not in body:
            raise _invalid(name, "is required")
    return PolicyRequest(
        period=Period.parse(body["period"], "period"),
        mode=_choice(RetentionMode, body["mode"], "mode"),
        on_expiry=_choice(OnExpiry, body["on_expiry"], "on_expiry"),
    )


def _choice(kind: type[_E], raw: object, field: str) -> _E:
    allowed = [member.value for member in kind]
    if not isinstance(raw, str) or raw not in allowed:
        raise _invalid(field, f"must be one of: {', '.join(allowed)}")
    return kind(raw)


@attrs.frozen
class RetentionPolicy:
    """One version of a document type's policy."""

    document_type: DocumentType
    version: int
    period: Period
    mode: RetentionMode
    on_expiry: OnExpiry
    created_at: datetime
    created_by: UUID | None


@attrs.frozen
class DocumentRetention:
    """A document's retention as recorded: the policy version that set it, its mode and
    ``retain_until`` (what the object store holds is read from the store itself)."""

    document_id: UUID
    document_type: DocumentType
    policy_version: int
    mode: RetentionMode
    retain_until: datetime
    uploaded_at: datetime


class RetentionCannotShorten(VaultError):
    """A new policy version would keep some document less long, or less strictly."""

    status = 409
    error_code = "RETENTION_CANNOT_SHORTEN"
    title = "Retention Cannot Shorten"


def check_successor(current: RetentionPolicy | None, new: PolicyRequest) -> None:
    """Refuse (``RetentionCannotShorten``) a new version that shortens or weakens ``current``.

    Shorter: ``new.period.after(t) < current.period.after(t)`` for some start ``t``. Days
    and weeks add a fixed count, so only how many days the years and months come to
    varies with ``t``, and that depends on the month and on the day only from the 29th
    on: every month of a 400-year Gregorian cycle (after which the calendar repeats) is
    checked on the 1st (standing for the 1st to the 28th) and on its 29th, 30th and 31st.
    The earliest such day from 2024-01-01 is named. On_expiry may change freely.
    """
    if current is None:
        return
    shorter_on = _first_shorter_start(current.period, new.period)
    if shorter_on is not None:
        raise RetentionCannotShorten(
            f"{new.period.text()} is shorter than {current.period.text()} "
            f"(version {current.version}) for documents uploaded on {shorter_on.isoformat()}"
        )
    if current.mode is RetentionMode.COMPLIANCE and new.mode is RetentionMode.GOVERNANCE:
        raise RetentionCannotShorten(
            f"governance is weaker than compliance (version {current.version}): "
            "a compliance retention cannot be made bypassable"
        )


_CYCLE_START_YEAR = 2024
_CYCLE_MONTHS = 400 * 12


def _month_table(count: int) -> tuple[list[int], list[int]]:
    """Ordinals of the 1st of ``count`` months from January 2024, and their lengths."""
    firsts, lengths = [], []
    ordinal = date(_CYCLE_START_YEAR, 1, 1).toordinal()
    for index in range(count):
        year, month = _CYCLE_START_YEAR + index // 12, index % 12 + 1
        length = calendar.monthrange(year, month)[1]
        firsts.append(ordinal)
        lengths.append(length)
        ordinal += length
    return firsts, lengths


_FIRSTS, _LENGTHS = _month_table(_CYCLE_MONTHS + MAX_PERIOD_MONTHS + 1)


def _first_shorter_start(current: Period, new: Period) -> date | None:
    """The earliest day (from 2024-01-01, within a 400-year cycle) from which ``new`` ends
    before ``current``, or None if it never does."""
    cur_months, new_months = current.total_months, new.total_months
    slack = new.total_days - current.total_days
    if new_months >= cur_months and slack >= 0:
        return None  # at least as many months and days from any start: never earlier
    firsts, lengths = _FIRSTS, _LENGTHS
    if max(cur_months, new_months) > MAX_PERIOD_MONTHS:  # not from parse; build what it needs
        firsts, lengths = _month_table(_CYCLE_MONTHS + max(cur_months, new_months) + 1)
    for index in range(_CYCLE_MONTHS):
        cur_first, new_first = firsts[index + cur_months], firsts[index + new_months]
        cur_length, new_length = lengths[index + cur_months], lengths[index + new_months]
        for day in (1, 29, 30, 31):
            if day > lengths[index]:
                break
            # Days from the start to each end differ by the ends' ordinals alone.
            ends_apart = (new_first + min(day, new_length)) - (cur_first + min(day, cur_length))
            if ends_apart + slack < 0:
                return date.fromordinal(firsts[index] + day - 1)
    return None


def retain_until(uploaded_at: datetime, policy: RetentionPolicy) -> datetime:
    """When a document uploaded at ``uploaded_at`` under ``policy`` may go."""
    return policy.period.after(uploaded_at)


def lengthened(current_until: datetime, uploaded_at: datetime, policy: RetentionPolicy) -> datetime:
    """What an existing document must keep under a new version: never earlier than now."""
    return max(current_until, retain_until(uploaded_at, policy))
