"""Billing periods follow the subscription's anchor in UTC: month ends and leap days."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome.ledger import Period
from authsome.ledger.plans import EPOCH, add_months, period_bounds


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (utc(2024, 2, 15), utc(2024, 1, 31), utc(2024, 2, 29)),
        (utc(2024, 2, 29), utc(2024, 2, 29), utc(2024, 3, 31)),  # leap year
        (utc(2024, 3, 30, 23, 59), utc(2024, 2, 29), utc(2024, 3, 31)),
        (utc(2024, 3, 31), utc(2024, 3, 31), utc(2024, 4, 30)),
        (utc(2024, 5, 1), utc(2024, 4, 30), utc(2024, 5, 31)),
        (utc(2023, 2, 28), utc(2023, 2, 28), utc(2023, 3, 31)),  # common year
        (utc(2023, 2, 27), utc(2023, 1, 31), utc(2023, 2, 28)),
        (utc(2023, 12, 31), utc(2023, 12, 31), utc(2024, 1, 31)),
    ],
)
def test_monthly_periods_anchored_on_the_31st(
    now: datetime, start: datetime, end: datetime
) -> None:
    anchor = utc(2020, 1, 31)
    assert period_bounds(anchor, Period.MONTHLY, now) == (start, end)


def test_period_keeps_the_anchor_time_of_day() -> None:
    anchor = utc(2024, 1, 15, 18, 30)
    assert period_bounds(anchor, Period.MONTHLY, utc(2024, 2, 15, 18, 29)) == (
        anchor,
        utc(2024, 2, 15, 18, 30),
    )
    assert period_bounds(anchor, Period.MONTHLY, utc(2024, 2, 15, 18, 30)).start == utc(
        2024, 2, 15, 18, 30
    )


def test_yearly_period_from_a_leap_day() -> None:
    anchor = utc(2024, 2, 29)
    assert period_bounds(anchor, Period.YEARLY, utc(2024, 12, 1)) == (anchor, utc(2025, 2, 28))
    assert period_bounds(anchor, Period.YEARLY, utc(2025, 2, 28)) == (
        utc(2025, 2, 28),
        utc(2026, 2, 28),
    )
    assert period_bounds(anchor, Period.YEARLY, utc(2028, 3, 1)) == (
        utc(2028, 2, 29),
        utc(2029, 2, 28),
    )


def test_period_none_never_ends() -> None:
    assert period_bounds(utc(2024, 1, 31), Period.NONE, utc(2030, 1, 1)) == (EPOCH, None)


def test_a_now_before_the_anchor_still_gets_its_period() -> None:
    assert period_bounds(utc(2024, 3, 31), Period.MONTHLY, utc(2024, 3, 1)) == (
        utc(2024, 2, 29),
        utc(2024, 3, 31),
    )


instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
periods = st.sampled_from([Period.MONTHLY, Period.YEARLY])


@given(anchor=instants, now=instants, period=periods)
def test_period_contains_now(anchor: datetime, now: datetime, period: Period) -> None:
    start, end = period_bounds(anchor, period, now)
    assert end is not None
    assert start <= now < end


@given(anchor=instants, now=instants, period=periods)
def test_periods_are_contiguous(anchor: datetime, now: datetime, period: Period) -> None:
    start, end = period_bounds(anchor, period, now)
    assert end is not None
    nxt = period_bounds(anchor, period, end)
    assert nxt.start == end
    before = period_bounds(anchor, period, start - timedelta(microseconds=1))
    assert before.end == start


@given(anchor=instants, now=instants, period=periods)
def test_start_day_is_the_anchor_day_clamped(
    anchor: datetime, now: datetime, period: Period
) -> None:
    start, _ = period_bounds(anchor, period, now)
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])
    assert start.time() == anchor.time()
    if period is Period.YEARLY:
        assert start.month == anchor.month


@given(anchor=instants, months=st.integers(min_value=-600, max_value=600))
def test_add_months_round_trips_when_not_clamped(anchor: datetime, months: int) -> None:
    moved = add_months(anchor, months)
    assert (moved.year * 12 + moved.month) - (anchor.year * 12 + anchor.month) == months
    if moved.day == anchor.day:
        assert add_months(moved, -months) == anchor
