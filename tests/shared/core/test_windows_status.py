import datetime as dt
from types import SimpleNamespace

import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import windows
from shared.core.accounting import Accountant, CallRecord
from shared.core.models import ApiKey, utcnow
from shared.core.status import (
    Status,
    frees_up_at,
    is_eligible,
    key_status,
    window_usage,
)
from shared.core.windows import EPOCH, WINDOW, anchor_for, format_duration, window_start

times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1))


@given(anchor=times, now=times)
def test_now_is_inside_its_window(anchor, now):
    start = window_start(anchor, now)
    assert start <= now < start + WINDOW
    assert (start - anchor) % WINDOW == dt.timedelta(0)


@given(anchor=times, k=st.integers(-1000, 1000),
       offset=st.timedeltas(dt.timedelta(0), WINDOW - dt.timedelta(microseconds=1)))
def test_window_k_covers_exactly_its_24_hours(anchor, k, offset):
    assert window_start(anchor, anchor + k * WINDOW + offset) == anchor + k * WINDOW


@given(anchor=times, k=st.integers(-1000, 1000))
def test_boundary_instant_belongs_to_the_next_window(anchor, k):
    boundary = anchor + k * WINDOW
    assert window_start(anchor, boundary) == boundary
    assert window_start(anchor, boundary - dt.timedelta(microseconds=1)) == boundary - WINDOW


@given(now=times)
def test_utc_day_windows_are_calendar_days(now):
    start = window_start(anchor_for("utc-day", now), now)
    assert start == dt.datetime(now.year, now.month, now.day)


@given(registered=times)
def test_rolling_anchor_is_the_registration_second(registered):
    anchor = anchor_for("rolling", registered)
    assert anchor.microsecond == 0 and registered - anchor < dt.timedelta(seconds=1)


def _row(**fields):
    base = dict(disabled=False, invalid=False, exhausted_window=None, cooldown_until=None,
                window_anchor=dt.datetime(2026, 1, 1, 8), window_start=None, used_today=0, calls_today=0,
                rate_hits_today=0, errors_today=0, daily_token_limit=1_000_000)
    base.update(fields)
    return SimpleNamespace(**base)


NOW = dt.datetime(2026, 1, 10, 12)
CURRENT = window_start(dt.datetime(2026, 1, 1, 8), NOW)


@given(used=st.integers(0, 2_000_000), limit=st.integers(1, 2_000_000), threshold=st.integers(0, 2_000_000),
       disabled=st.booleans(), invalid=st.booleans(), cooling=st.booleans(), quota=st.booleans(),
       stale=st.booleans())
@settings(max_examples=300)
def test_status_precedence(used, limit, threshold, disabled, invalid, cooling, quota, stale):
    row = _row(used_today=used, daily_token_limit=limit, disabled=disabled, invalid=invalid,
               window_start=CURRENT - WINDOW if stale else CURRENT,
               cooldown_until=NOW + dt.timedelta(seconds=5) if cooling else NOW - dt.timedelta(seconds=5),
               exhausted_window=CURRENT if quota else CURRENT - WINDOW)
    effective = 0 if stale else used
    status = key_status(row, NOW, threshold)
    if disabled:
        expected = Status.DISABLED
    elif invalid:
        expected = Status.INVALID
    elif effective >= limit or quota:
        expected = Status.EXHAUSTED
    elif cooling:
        expected = Status.RATE_LIMITED
    elif effective == 0:
        expected = Status.FRESH
    elif limit - effective < threshold:
        expected = Status.LOW
    else:
        expected = Status.ACTIVE
    assert status is expected
    assert is_eligible(row, NOW, threshold) == (expected in (Status.FRESH, Status.ACTIVE, Status.LOW))


def test_exhausted_key_frees_up_when_its_window_ends():
    row = _row(window_start=CURRENT, used_today=1_000_000)
    assert frees_up_at(row, NOW) == CURRENT + WINDOW
    assert key_status(row, CURRENT + WINDOW - dt.timedelta(microseconds=1)) is Status.EXHAUSTED
    assert key_status(row, CURRENT + WINDOW) is Status.FRESH
    assert frees_up_at(_row(invalid=True), NOW) is None


def test_quota_exhaustion_lasts_only_its_window():
    row = _row(window_start=CURRENT, used_today=10, exhausted_window=CURRENT)
    assert key_status(row, NOW) is Status.EXHAUSTED
    assert key_status(row, CURRENT + WINDOW) is Status.FRESH


def test_format_duration():
    assert format_duration(dt.timedelta(hours=18, minutes=45, seconds=59)) == "18h 45m"
    assert format_duration(dt.timedelta(minutes=3)) == "3m"
    assert format_duration(dt.timedelta(seconds=-5)) == "0m"


def test_clock_travel_across_a_rolling_window(pool):
    """With the real clock moved: calls just before and after the 24 h mark, then the reset."""
    config, ring = pool
    key_id = ring.ids()[0]
    anchor = ApiKey.get_by_id(key_id).window_anchor
    accountant = Accountant("b1")

    def call_at(moment, tokens):
        with time_machine.travel(moment.replace(tzinfo=dt.UTC), tick=False):
            accountant.record(CallRecord(key_id=key_id, bot="b1", operation="op", model="m",
                                         input_tokens=tokens, output_tokens=0))
            return window_usage(ApiKey.get_by_id(key_id), utcnow()), key_status(ApiKey.get_by_id(key_id), utcnow())

    usage, status = call_at(anchor + dt.timedelta(hours=23, minutes=59, seconds=59), 600_000)
    assert usage.used == 600_000 and status is Status.LOW
    assert format_duration(usage.resets_in) == "0m"
    usage, status = call_at(anchor + WINDOW, 1_000)
    assert usage.used == 1_000 and status is Status.ACTIVE
    assert usage.resets_in == WINDOW
    with time_machine.travel((anchor + 2 * WINDOW).replace(tzinfo=dt.UTC), tick=False):
        key = ApiKey.get_by_id(key_id)
        assert key_status(key, utcnow()) is Status.FRESH
        assert window_usage(key, utcnow()).used == 0
        assert key.total_tokens == 601_000


def test_utc_day_mode_resets_at_midnight_whatever_the_registration_time():
    row = _row(window_anchor=EPOCH, window_start=dt.datetime(2026, 1, 10), used_today=5)
    assert window_usage(row, dt.datetime(2026, 1, 10, 23, 59, 59)).used == 5
    assert window_usage(row, dt.datetime(2026, 1, 11, 0, 0, 0)).used == 0
    assert windows.resets_in(EPOCH, dt.datetime(2026, 1, 10, 23, 0)) == dt.timedelta(hours=1)
