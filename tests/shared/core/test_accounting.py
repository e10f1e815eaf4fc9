import datetime as dt

import pytest

from shared.core.accounting import (
    Accountant,
    CallRecord,
    Outcome,
    RateLimitSnapshot,
    record_call,
)
from shared.core.models import ApiKey, DailyRollup, UsageEvent
from shared.core.pricing import Pricer
from shared.core.status import Status, key_status, window_usage
from shared.core.windows import WINDOW

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def _call(key_id, at, **kw):
    base = dict(key_id=key_id, bot="b1", operation="autoreply", model="gpt-4o-mini", at=at,
                input_tokens=100, cached_tokens=20, output_tokens=50)
    base.update(kw)
    return CallRecord(**base)


def _anchor(key_id):
    return ApiKey.get_by_id(key_id).window_anchor


def test_event_counters_and_rollup_move_together(pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    acc = Accountant("b1")
    now = _anchor(key_id) + dt.timedelta(hours=1)
    for _ in range(3):
        acc.record(_call(key_id, now))
    key = ApiKey.get_by_id(key_id)
    assert (key.used_today, key.input_today, key.cached_today, key.output_today, key.calls_today) == \
        (450, 300, 60, 150, 3)
    assert key.total_tokens == 450 and key.total_calls == 3
    (rollup,) = DailyRollup.select()
    assert (rollup.calls, rollup.total_tokens, rollup.cached_tokens) == (3, 450, 60)
    assert rollup.cost_nanousd == key.total_cost_nanousd == sum(e.cost_nanousd for e in UsageEvent.select())
    assert key.total_cost_nanousd > 0


def test_cost_is_exact_integer_nano_dollars(pool):
    _config, ring = pool
    recorded = Accountant("b1").record(_call(ring.ids()[0], T0, input_tokens=1000, cached_tokens=200,
                                             output_tokens=500))
    # gpt-4o-mini: 800 x $0.15/M + 200 x $0.075/M + 500 x $0.60/M = $0.000435
    assert recorded.cost_nanousd == 435_000


def test_recording_the_same_call_twice_counts_once(pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    acc = Accountant("b1")
    call = _call(key_id, _anchor(key_id))
    assert not acc.record(call).duplicate
    assert acc.record(call).duplicate
    assert UsageEvent.select().count() == 1
    assert ApiKey.get_by_id(key_id).calls_today == 1


def test_call_after_window_end_starts_the_new_window(pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    anchor = _anchor(key_id)
    acc = Accountant("b1")
    acc.record(_call(key_id, anchor + WINDOW - dt.timedelta(microseconds=1)))
    acc.record(_call(key_id, anchor + WINDOW))   # nobody reset the key in between
    key = ApiKey.get_by_id(key_id)
    assert key.window_start == anchor + WINDOW
    assert key.used_today == 150 and key.calls_today == 1
    assert key.total_tokens == 300


def test_late_call_from_older_window_leaves_today_alone(pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    anchor = _anchor(key_id)
    acc = Accountant("b1")
    acc.record(_call(key_id, anchor + WINDOW + dt.timedelta(seconds=1)))
    acc.record(_call(key_id, anchor + WINDOW - dt.timedelta(seconds=1)))  # committed late
    key = ApiKey.get_by_id(key_id)
    assert key.window_start == anchor + WINDOW
    assert key.used_today == 150
    assert key.total_tokens == 300


@pytest.mark.parametrize("outcome, status", [
    (Outcome.QUOTA_EXHAUSTED, Status.EXHAUSTED),
    (Outcome.INVALID_KEY, Status.INVALID),
    (Outcome.RATE_LIMITED, Status.RATE_LIMITED),
])
def test_failure_outcomes_set_key_state_and_count_no_tokens(pool, outcome, status):
    config, ring = pool
    key_id = ring.ids()[0]
    at = _anchor(key_id) + dt.timedelta(hours=2)
    Accountant("b1").record(_call(key_id, at, outcome=outcome, input_tokens=0, cached_tokens=0,
                                  output_tokens=0, error_code="x",
                                  cooldown_until=at + dt.timedelta(seconds=30)))
    key = ApiKey.get_by_id(key_id)
    assert key_status(key, at + dt.timedelta(seconds=1), config.pool.low_threshold) is status
    assert key.used_today == 0 and key.calls_today == 1
    assert key.rate_hits_today == int(outcome is Outcome.RATE_LIMITED)
    assert key.errors_today == int(outcome is not Outcome.RATE_LIMITED)
    (rollup,) = DailyRollup.select()
    assert rollup.ok_calls == 0 and rollup.total_tokens == 0


def test_rate_limit_snapshot_is_kept(pool):
    _config, ring = pool
    key_id = ring.ids()[0]
    reset_at = T0 + dt.timedelta(seconds=6)
    Accountant("b1").record(_call(key_id, T0, rate_limits=RateLimitSnapshot(
        remaining_requests=499, remaining_tokens=199_000, limit_requests=500, limit_tokens=200_000,
        reset_requests_at=reset_at, reset_tokens_at=reset_at)))
    key = ApiKey.get_by_id(key_id)
    assert (key.rl_remaining_requests, key.rl_remaining_tokens, key.rl_limit_tokens) == (499, 199_000, 200_000)
    assert key.rl_reset_tokens_at == reset_at


def test_used_today_equals_events_in_current_window(pool):
    config, ring = pool
    anchor = _anchor(ring.ids()[0])
    pricer = Pricer(config.pricing)
    times = [anchor + dt.timedelta(hours=h) for h in (1, 5, 23, 25, 30, 47.5)]
    for i, at in enumerate(times):
        record_call(_call(ring.ids()[0], at, output_tokens=10 * i), anchor=anchor, pricer=pricer)
    now = anchor + dt.timedelta(hours=47.9)
    key = ApiKey.get_by_id(ring.ids()[0])
    start = window_usage(key, now).window_start
    expected = sum(e.total_tokens for e in UsageEvent.select().where(UsageEvent.at >= start))
    assert window_usage(key, now).used == expected == 3 * 100 + 10 * (3 + 4 + 5)


def _books():
    """Everything a booking can change: key rows, events, rollups (chat rollups included)."""
    from shared.core.models import ChatRollup
    return ([tuple(row) for row in ApiKey.select().order_by(ApiKey.id).tuples()],
            [tuple(row) for row in UsageEvent.select().order_by(UsageEvent.id).tuples()],
            [tuple(row) for row in DailyRollup.select().order_by(DailyRollup.id).tuples()],
            [tuple(row) for row in ChatRollup.select().order_by(ChatRollup.id).tuples()])


def test_a_rehearsed_booking_leaves_the_books_as_they_were_and_the_next_call_counts_exactly(db, pool):
    from shared.core.accounting import rehearse_booking
    _config, ring = pool
    key_id = ring.ids()[0]
    acc = Accountant("b1")
    now = _anchor(key_id) + dt.timedelta(hours=1)
    acc.record(_call(key_id, now, chat_id=7))
    before = _books()
    rehearse_booking(key_id, _anchor(key_id), Pricer())
    rehearse_booking(key_id, _anchor(key_id), Pricer(), model="gpt-4o-mini", times=3)
    assert _books() == before
    assert not db.in_transaction()
    acc.record(_call(key_id, now, chat_id=7, rate_limits=RateLimitSnapshot(remaining_requests=3)))
    key = ApiKey.get_by_id(key_id)
    assert (key.calls_today, key.used_today, key.rl_remaining_requests) == (2, 300, 3)
    assert UsageEvent.select().count() == 2 and DailyRollup.get().calls == 2


def test_a_rehearsal_is_refused_inside_an_open_transaction_and_leaves_it_alone(db, pool):
    from shared.core.accounting import rehearse_booking
    _config, ring = pool
    key_id = ring.ids()[0]
    with db.atomic():
        ApiKey.update(used_today=41).where(ApiKey.id == key_id).execute()
        with pytest.raises(RuntimeError):
            rehearse_booking(key_id, _anchor(key_id), Pricer())
    assert ApiKey.get_by_id(key_id).used_today == 41


def test_anchors_loaded_at_start_are_the_rows_anchors(pool):
    _config, ring = pool
    acc = Accountant("b1")
    acc.load_anchors(ring.ids())
    ApiKey.update(window_anchor=T0).execute()        # read before: the loaded values are the old ones
    assert [acc.anchor(i) for i in ring.ids()] != [T0] * len(ring.ids())
    fresh = Accountant("b1")
    fresh.load_anchors(ring.ids())
    assert [fresh.anchor(i) for i in ring.ids()] == [T0] * len(ring.ids())
