"""Retention rules: periods, policy bodies, which successors are allowed, lengthening."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from vault.domain.errors import InvalidRequest
from vault.domain.models import DocumentType
from vault.domain.retention import (
    OnExpiry,
    Period,
    PolicyRequest,
    RetentionCannotShorten,
    RetentionMode,
    RetentionPolicy,
    check_successor,
    lengthened,
    parse_policy,
    retain_until,
)

COMPLIANCE, GOVERNANCE = RetentionMode.COMPLIANCE, RetentionMode.GOVERNANCE


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def policy(period: str, mode: RetentionMode = COMPLIANCE, version: int = 2) -> RetentionPolicy:
    return RetentionPolicy(
        document_type=DocumentType.KYC, version=version, period=Period.parse(period),
        mode=mode, on_expiry=OnExpiry.REVIEW, created_at=at(2024, 1, 1), created_by=uuid4(),
    )


def request(
    period: str, mode: RetentionMode = COMPLIANCE, on_expiry: OnExpiry = OnExpiry.REVIEW
) -> PolicyRequest:
    return PolicyRequest(period=Period.parse(period), mode=mode, on_expiry=on_expiry)


def refused(exc: pytest.ExceptionInfo[InvalidRequest], field: str) -> str:
    """The 422's message, after checking it is a validation error naming ``field``."""
    err = exc.value
    assert err.status == 422
    assert err.error_code == "VALIDATION_ERROR"
    assert err.errors[0]["loc"] == ["body", field]
    assert f"body.{field}:" in str(err)
    return str(err.errors[0]["msg"])


# -- Period.parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("P6Y", (6, 0, 0, 0)),
        ("P1Y6M", (1, 6, 0, 0)),
        ("P10W", (0, 0, 10, 0)),
        ("P30D", (0, 0, 0, 30)),
        ("P2Y3M4W5D", (2, 3, 4, 5)),
        ("P18M", (0, 18, 0, 0)),
        ("P0Y1D", (0, 0, 0, 1)),
        ("P100Y", (100, 0, 0, 0)),
        ("P1200M", (0, 1200, 0, 0)),
        ("P36525D", (0, 0, 0, 36525)),  # 2000-01-01 + 36525 days is exactly 2100-01-01
        ("P99Y11M31D", (99, 11, 0, 31)),
    ],
)
def test_parse_accepts(text: str, units: tuple[int, int, int, int]) -> None:
    period = Period.parse(text)
    assert (period.years, period.months, period.weeks, period.days) == units


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (None, "ISO 8601 duration string"),
        (6, "ISO 8601 duration string"),
        (["P6Y"], "ISO 8601 duration string"),
        ("6Y", "ISO 8601 duration"),
        ("P", "at least one unit"),
        ("P0D", "must not be zero"),
        ("P0Y0M0W0D", "must not be zero"),
        ("p6y", "upper case"),
        ("P6y", "upper case"),
        ("P1.5Y", "whole"),
        ("P1,5Y", "whole"),
        ("P-1Y", "non-negative"),
        ("P+1Y", "non-negative"),
        ("-P1Y", "ISO 8601 duration"),
        ("P6M1Y", "in that order"),
        ("P1Y1Y", "ISO 8601 duration"),
        (" P6Y", "ISO 8601 duration"),
        ("P6Y ", "ISO 8601 duration"),
        ("P٦Y", "ISO 8601 duration"),  # an Arabic-Indic six: digits are ASCII only
        ("PT6H", "years, months, weeks or days"),
        ("PT0S", "years, months, weeks or days"),
        ("P1YT2H", "years, months, weeks or days"),
        ("P1DT12H", "years, months, weeks or days"),
        ("P101Y", "at most 100 years"),
        ("P100Y1D", "at most 100 years"),
        ("P99Y13M", "at most 100 years"),
        ("P1201M", "at most 100 years"),
        ("P36526D", "at most 100 years"),
        ("P5218W", "at most 100 years"),
        ("P" + "9" * 30 + "D", "at most 100 years"),  # would overflow a timedelta
        ("P" + "9" * 30 + "Y", "at most 100 years"),
        ("P" + "1" * 32 + "D", "at most 32 characters"),
        ("", "ISO 8601 duration"),
    ],
)
def test_parse_refuses(raw: object, says: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        Period.parse(raw)
    assert says in refused(exc, "period")


def test_parse_names_the_field_it_is_given() -> None:
    with pytest.raises(InvalidRequest) as exc:
        Period.parse("P0D", "minimum")
    assert "zero" in refused(exc, "minimum")


@pytest.mark.parametrize(
    ("period", "text"),
    [
        (Period(1, 6), "P1Y6M"),
        (Period(years=6), "P6Y"),
        (Period(weeks=10), "P10W"),
        (Period(days=30), "P30D"),
        (Period(2, 3, 4, 5), "P2Y3M4W5D"),
        (Period(years=1, days=1), "P1Y1D"),
        (Period(months=18), "P18M"),  # months are not folded into years
        (Period(), "P0D"),
    ],
)
def test_text_is_canonical(period: Period, text: str) -> None:
    assert period.text() == text


@pytest.mark.parametrize(
    "text", ["P6Y", "P1Y6M", "P10W", "P30D", "P2Y3M4W5D", "P18M", "P100Y", "P1Y1D"]
)
def test_text_round_trips(text: str) -> None:
    period = Period.parse(text)
    assert period.text() == text
    assert Period.parse(period.text()) == period


def test_text_drops_zero_units_and_leading_zeros() -> None:
    assert Period.parse("P0Y06M0W1D").text() == "P6M1D"


# -- Period.after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        (at(2024, 2, 29), "P1Y", at(2025, 2, 28)),
        (at(2024, 2, 29), "P4Y", at(2028, 2, 29)),
        (at(2096, 2, 29), "P4Y", at(2100, 2, 28)),  # 2100 is not a leap year
        (at(2025, 1, 31), "P1M", at(2025, 2, 28)),
        (at(2024, 1, 31), "P1M", at(2024, 2, 29)),
        (at(2025, 3, 31), "P1M", at(2025, 4, 30)),
        (at(2025, 1, 31), "P2M", at(2025, 3, 31)),  # clamped once, from the start, not per month
        (at(2025, 10, 31), "P4M", at(2026, 2, 28)),
        (at(2025, 11, 15), "P2M", at(2026, 1, 15)),
        (at(2024, 1, 31), "P1M1D", at(2024, 3, 1)),  # months first, then days
        (at(2024, 1, 1), "P365D", at(2024, 12, 31)),
        (at(2024, 1, 1), "P52W", at(2024, 12, 30)),
        (at(2024, 3, 31), "P6Y", at(2030, 3, 31)),
        (at(2024, 3, 31, 23, 59), "P1Y6M2W3D", at(2025, 10, 17, 23, 59)),
    ],
)
def test_after_adds_calendar_units(start: datetime, period: str, end: datetime) -> None:
    assert Period.parse(period).after(start) == end


def test_after_keeps_time_of_day_microseconds_and_tzinfo() -> None:
    start = datetime(2024, 2, 29, 13, 45, 7, 123456, tzinfo=UTC)
    end = Period(years=1).after(start)
    assert end == datetime(2025, 2, 28, 13, 45, 7, 123456, tzinfo=UTC)
    assert end.tzinfo is UTC
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 1, 31, 1, 30, tzinfo=plus_two)
    assert Period(months=1).after(local) == datetime(2025, 2, 28, 1, 30, tzinfo=plus_two)
    assert Period(months=1).after(local).tzinfo is plus_two


def test_after_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(years=1).after(datetime(2024, 1, 1))


# -- parse_policy ---------------------------------------------------------------------------


def test_parse_policy_reads_the_three_fields() -> None:
    asked = parse_policy({"period": "P6Y", "mode": "governance", "on_expiry": "dispose"})
    assert asked == PolicyRequest(Period(years=6), GOVERNANCE, OnExpiry.DISPOSE)
    assert asked.mode is GOVERNANCE
    assert asked.on_expiry is OnExpiry.DISPOSE


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (["P6Y"], "body", "JSON object"),
        ("P6Y", "body", "JSON object"),
        (None, "body", "JSON object"),
        ({"mode": "compliance", "on_expiry": "review"}, "period", "required"),
        ({"period": "P6Y", "on_expiry": "review"}, "mode", "required"),
        ({"period": "P6Y", "mode": "compliance"}, "on_expiry", "required"),
        ({"period": "P6Y", "mode": "compliance", "on_expiry": "review", "legal_hold": True},
         "legal_hold", "not a field"),
        ({"period": "PT6H", "mode": "compliance", "on_expiry": "review"}, "period", "days"),
        ({"period": 6, "mode": "compliance", "on_expiry": "review"}, "period", "string"),
        ({"period": "P6Y", "mode": "strict", "on_expiry": "review"},
         "mode", "one of: compliance, governance"),
        ({"period": "P6Y", "mode": "COMPLIANCE", "on_expiry": "review"},
         "mode", "one of: compliance, governance"),
        ({"period": "P6Y", "mode": None, "on_expiry": "review"},
         "mode", "one of: compliance, governance"),
        ({"period": "P6Y", "mode": "compliance", "on_expiry": "delete"},
         "on_expiry", "one of: review, dispose"),
        ({"period": "P6Y", "mode": "compliance", "on_expiry": 1},
         "on_expiry", "one of: review, dispose"),
    ],
)
def test_parse_policy_refuses(body: object, field: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_policy(body)
    assert says in refused(exc, field)


# -- check_successor ------------------------------------------------------------------------


def shortened_on(exc: pytest.ExceptionInfo[RetentionCannotShorten]) -> date:
    err = exc.value
    assert (err.status, err.error_code, err.title) == (
        409, "RETENTION_CANNOT_SHORTEN", "Retention Cannot Shorten"
    )
    found = re.search(r"uploaded on (\d{4}-\d{2}-\d{2})$", str(err))
    assert found is not None, str(err)
    return date.fromisoformat(found[1])


def test_no_current_policy_allows_anything_valid() -> None:
    check_successor(None, request("P1D", GOVERNANCE))
    check_successor(None, request("P100Y"))


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("P6Y", "P7Y"),
        ("P6Y", "P6Y"),
        ("P6Y", "P6Y1D"),
        ("P1Y", "P12M"),
        ("P12M", "P1Y"),
        ("P1Y", "P366D"),
        ("P52W", "P1Y"),
        ("P365D", "P1Y"),
        ("P28D", "P1M"),
        ("P4W", "P28D"),
        ("P4Y", "P1461D"),  # four years are at most 1461 days, even across 2100
        ("P1Y6M", "P18M"),
    ],
)
def test_longer_or_equal_is_allowed(current: str, new: str) -> None:
    check_successor(policy(current), request(new))


@pytest.mark.parametrize(
    ("current", "new", "first_day"),
    [
        ("P6Y", "P5Y", date(2024, 1, 1)),
        ("P6Y", "P5Y11M30D", date(2024, 1, 1)),  # 2024-01-01 + P6Y is 31 days after + P5Y11M
        ("P1Y", "P365D", date(2024, 1, 1)),  # 2024-01-01 + P1Y is 366 days
        ("P1Y", "P52W", date(2024, 1, 1)),
        ("P1M", "P30D", date(2024, 1, 1)),
        ("P30D", "P1M", date(2024, 1, 31)),  # 2024-01-31 + P1M is 2024-02-29: 29 days
        ("P1461D", "P4Y", date(2096, 2, 29)),  # + P4Y is 2100-02-28: 1460 days
        ("P100Y", "P36524D", date(2300, 3, 1)),  # 2300-03-01 + P100Y spans 25 leap days
    ],
)
def test_shorter_is_refused_naming_a_day_it_is_shorter(
    current: str, new: str, first_day: date
) -> None:
    with pytest.raises(RetentionCannotShorten) as exc:
        check_successor(policy(current), request(new))
    day = shortened_on(exc)
    assert day == first_day
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert Period.parse(new).after(start) < Period.parse(current).after(start)
    assert f"{new} is shorter than {current} (version 2)" in str(exc.value)


def test_the_day_named_is_the_first_shorter_one() -> None:
    # P1M after P30D: shorter only from a 31st whose next month is short, or from February
    with pytest.raises(RetentionCannotShorten) as exc:
        check_successor(policy("P30D"), request("P1M"))
    first = shortened_on(exc)
    day = date(2024, 1, 1)
    while day < first:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        assert Period(months=1).after(start) >= Period(days=30).after(start), day
        day += timedelta(days=1)


def test_refusal_message_is_the_documented_one() -> None:
    with pytest.raises(RetentionCannotShorten) as exc:
        check_successor(policy("P6Y"), request("P5Y"))
    assert str(exc.value) == (
        "P5Y is shorter than P6Y (version 2) for documents uploaded on 2024-01-01"
    )


def test_weaker_mode_is_refused() -> None:
    with pytest.raises(RetentionCannotShorten) as exc:
        check_successor(policy("P6Y", COMPLIANCE), request("P7Y", GOVERNANCE))
    assert exc.value.status == 409
    assert exc.value.error_code == "RETENTION_CANNOT_SHORTEN"
    assert "governance is weaker than compliance (version 2)" in str(exc.value)


@pytest.mark.parametrize(
    ("current", "new"),
    [(GOVERNANCE, COMPLIANCE), (GOVERNANCE, GOVERNANCE), (COMPLIANCE, COMPLIANCE)],
)
def test_stronger_or_same_mode_is_allowed(current: RetentionMode, new: RetentionMode) -> None:
    check_successor(policy("P6Y", current), request("P6Y", new))


def test_on_expiry_may_change_either_way() -> None:
    check_successor(policy("P6Y"), request("P6Y", on_expiry=OnExpiry.DISPOSE))
    review_after = RetentionPolicy(
        document_type=DocumentType.KYC, version=3, period=Period(years=6), mode=COMPLIANCE,
        on_expiry=OnExpiry.DISPOSE, created_at=at(2024, 1, 1), created_by=None,
    )
    check_successor(review_after, request("P6Y", on_expiry=OnExpiry.REVIEW))


@pytest.mark.parametrize(
    ("current", "new", "shorter"),
    [("P1461D", "P4Y", True), ("P30D", "P1M", True), ("P4Y", "P1461D", False),
     ("P28D", "P1M", False), ("P99Y", "P1200M", False), ("P1Y", "P366D", False),
     ("P1Y", "P365D", True)],
)
def test_check_successor_agrees_with_after_over_every_day_of_2096_to_2103(
    current: str, new: str, shorter: bool
) -> None:
    """Brute force over the days around 2100, where a 4-year cycle has one leap day fewer."""
    cur, nxt = Period.parse(current), Period.parse(new)
    start, days = at(2096, 1, 1), (at(2104, 1, 1) - at(2096, 1, 1)).days
    shorter_somewhere = any(
        nxt.after(start + timedelta(days=n)) < cur.after(start + timedelta(days=n))
        for n in range(days)
    )
    assert shorter_somewhere is shorter
    if shorter:
        with pytest.raises(RetentionCannotShorten):
            check_successor(policy(current), request(new))
    else:
        check_successor(policy(current), request(new))


@pytest.mark.parametrize(
    ("current", "new"),
    [("P1Y", "P366D"), ("P4Y", "P1461D"), ("P28D", "P1M"), ("P100Y", "P36525D"),
     ("P1200M", "P100Y"), ("P30D", "P1M")],
)
def test_check_successor_is_fast(current: str, new: str) -> None:
    # the worst case: allowed, yet neither period dominates, so every month is checked
    cur, asked = policy(current), request(new)
    started = time.perf_counter()
    try:
        check_successor(cur, asked)
    except RetentionCannotShorten:
        pass
    assert time.perf_counter() - started < 0.05


# -- retain_until and lengthened ------------------------------------------------------------


def test_retain_until_is_the_period_after_the_upload() -> None:
    assert retain_until(at(2024, 2, 29, 9, 30), policy("P6Y")) == at(2030, 2, 28, 9, 30)
    assert retain_until(at(2024, 3, 31), policy("P1Y6M")) == at(2025, 9, 30)


def test_lengthened_moves_later_under_a_longer_policy() -> None:
    uploaded = at(2024, 3, 31)
    current_until = retain_until(uploaded, policy("P5Y"))
    assert current_until == at(2029, 3, 31)
    assert lengthened(current_until, uploaded, policy("P7Y")) == at(2031, 3, 31)


def test_lengthened_never_moves_earlier() -> None:
    uploaded = at(2024, 3, 31)
    # recorded under an older, longer rule (or lengthened by hand): a shorter policy keeps it
    current_until = at(2035, 1, 1)
    assert lengthened(current_until, uploaded, policy("P6Y")) == current_until
    for period in ("P1D", "P1Y", "P6Y", "P10Y", "P11Y", "P20Y"):
        until = lengthened(current_until, uploaded, policy(period))
        assert until >= current_until
        assert until >= retain_until(uploaded, policy(period))
    assert lengthened(current_until, uploaded, policy("P20Y")) == at(2044, 3, 31)
