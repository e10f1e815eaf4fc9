"""Pace forecasts: at the pace of the last hour, when does a key (or the pool) run out?

The forecasts are pure functions of plain values and a clock; `recent_tokens_by_key` is
the one query behind them (tokens per key from the usage events of the last hour); their
JSON form is in `render_data`.
A key's forecast only looks inside its current window: a key that would run out after
its window ends "lasts the window". The pool's forecast asks whether what is left
today, across all usable keys, lasts until the next reset of any of them.
"""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import peewee as pw

from shared.core.models import UsageEvent
from shared.core.query_rows import dict_rows
from shared.core.status import Status

PACE_PERIOD = dt.timedelta(hours=1)
FAR_FUTURE = dt.timedelta(days=3650)
UNUSABLE = frozenset({Status.DISABLED, Status.INVALID})


class Outlook(str, enum.Enum):
    RUNS_OUT = "runs_out"          # at this pace, before the window ends
    LASTS = "lasts"                # at this pace, it lasts the window
    IDLE = "idle"                  # nothing used in the pace period: lasts the window
    EXHAUSTED = "exhausted"        # nothing left until the window ends
    UNUSABLE = "unusable"          # disabled or invalid: no forecast

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class KeyForecast:
    """One key's outlook for its current window."""
    outlook: Outlook
    tokens_per_hour: int
    window_end: dt.datetime
    runs_out_at: dt.datetime | None = None   # set when outlook is RUNS_OUT
    now: dt.datetime | None = None           # when it was made: times on another day say which

    @property
    def text(self) -> str:
        if self.outlook is Outlook.RUNS_OUT and self.runs_out_at is not None:
            return f"runs out ~{clock_time(self.runs_out_at, self.now)}"
        if self.outlook is Outlook.EXHAUSTED:
            return f"exhausted until {clock_time(self.window_end, self.now)}"
        if self.outlook is Outlook.UNUSABLE:
            return "no forecast (key unusable)"
        if self.outlook is Outlook.IDLE:
            return "idle: lasts the window"
        return "lasts the window"


@dataclass(frozen=True)
class PoolForecast:
    """Whether the pool's allowance left now lasts until the next reset of any usable key."""
    outlook: Outlook
    tokens_per_hour: int
    left: int
    next_reset_at: dt.datetime | None         # None when no key is usable
    runs_out_at: dt.datetime | None = None
    now: dt.datetime | None = None            # when it was made: times on another day say which

    @property
    def text(self) -> str:
        if self.outlook is Outlook.UNUSABLE or self.next_reset_at is None:
            return "no usable key"
        reset = clock_time(self.next_reset_at, self.now)
        if self.outlook is Outlook.RUNS_OUT and self.runs_out_at is not None:
            return f"pool runs out ~{clock_time(self.runs_out_at, self.now)}, before the next reset at {reset}"
        if self.outlook is Outlook.EXHAUSTED:
            return f"pool exhausted until the next reset at {reset}"
        return f"today's allowance lasts until the next reset at {reset}"


def clock_time(at: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """'14:20 UTC' on the day of `now` (rounded down to the minute: a forecast should not
    promise too much), 'tomorrow 07:15 UTC' on the next day, '11-25 07:15 UTC' further off:
    "until 10:46" read at 10:49 must not mean a time already past."""
    if at is None:
        return "–"
    if now is None or at.date() == now.date():
        return at.strftime("%H:%M UTC")
    if at.date() == now.date() + dt.timedelta(days=1):
        return at.strftime("tomorrow %H:%M UTC")
    return at.strftime("%m-%d %H:%M UTC")


def forecast_key(*, status: Status, left: int, window_end: dt.datetime, tokens_last_period: int,
                 now: dt.datetime, period: dt.timedelta = PACE_PERIOD) -> KeyForecast:
    """The outlook of one key with `left` tokens until `window_end`, spending at the pace of
    `tokens_last_period` tokens per `period`."""
    per_hour = _per_hour(tokens_last_period, period)
    if status in UNUSABLE:
        return KeyForecast(Outlook.UNUSABLE, per_hour, window_end, now=now)
    if status is Status.EXHAUSTED or left <= 0:
        return KeyForecast(Outlook.EXHAUSTED, per_hour, window_end, now=now)
    if tokens_last_period <= 0:
        return KeyForecast(Outlook.IDLE, 0, window_end, now=now)
    runs_out_at = _runs_out_at(now, left, tokens_last_period, period)
    if runs_out_at >= window_end:
        return KeyForecast(Outlook.LASTS, per_hour, window_end, now=now)
    return KeyForecast(Outlook.RUNS_OUT, per_hour, window_end, runs_out_at, now=now)


def forecast_pool(keys: list[tuple[Status, int, dt.datetime, int]], *, now: dt.datetime,
                  period: dt.timedelta = PACE_PERIOD) -> PoolForecast:
    """The pool's outlook from (status, left, window_end, tokens_last_period) per key.

    The pace is the whole pool's (calls move to the next key when one runs dry); the
    allowance is what the usable keys have left; it must last until the earliest
    window end among usable keys, when fresh tokens arrive.
    """
    spent = sum(tokens for _status, _left, _end, tokens in keys)
    per_hour = _per_hour(spent, period)
    usable = [(status, left, end) for status, left, end, _tokens in keys if status not in UNUSABLE]
    if not usable:
        return PoolForecast(Outlook.UNUSABLE, per_hour, 0, None, now=now)
    left = sum(left for status, left, _end in usable if status is not Status.EXHAUSTED)
    next_reset = min(end for _status, _left, end in usable)
    if left <= 0:
        return PoolForecast(Outlook.EXHAUSTED, per_hour, 0, next_reset, now=now)
    if spent <= 0:
        return PoolForecast(Outlook.IDLE, 0, left, next_reset, now=now)
    runs_out_at = _runs_out_at(now, left, spent, period)
    if runs_out_at >= next_reset:
        return PoolForecast(Outlook.LASTS, per_hour, left, next_reset, now=now)
    return PoolForecast(Outlook.RUNS_OUT, per_hour, left, next_reset, runs_out_at, now=now)


def forecast_views(views, recent: dict[int, int], now: dt.datetime,
                   period: dt.timedelta = PACE_PERIOD) -> tuple[dict[int, KeyForecast], PoolForecast]:
    """Forecasts for report KeyViews (by key id) and for the pool, given `recent_tokens_by_key`."""
    rows = [(v.status, v.usage.left, now + v.usage.resets_in, recent.get(v.id, 0)) for v in views]
    by_key = {view.id: forecast_key(status=status, left=left, window_end=end, tokens_last_period=tokens,
                                    now=now, period=period)
              for view, (status, left, end, tokens) in zip(views, rows)}
    return by_key, forecast_pool(rows, now=now, period=period)


def recent_tokens_by_key(now: dt.datetime, period: dt.timedelta = PACE_PERIOD) -> dict[int, int]:
    """Tokens per key id of the calls in (now - period, now], from the usage events."""
    query = (UsageEvent.select(UsageEvent.key.alias("key_id"), pw.fn.SUM(UsageEvent.total_tokens).alias("tokens"))
             .where((UsageEvent.at > now - period) & (UsageEvent.at <= now))
             .group_by(UsageEvent.key))
    return {row["key_id"]: int(row["tokens"] or 0) for row in dict_rows(query)}


def recent_tokens_by_key_model(now: dt.datetime, period: dt.timedelta = PACE_PERIOD) -> dict[tuple[int, str], int]:
    """Tokens per (key id, model) of the calls in (now - period, now], for allowance forecasts."""
    query = (UsageEvent.select(UsageEvent.key.alias("key_id"), UsageEvent.model,
                               pw.fn.SUM(UsageEvent.total_tokens).alias("tokens"))
             .where((UsageEvent.at > now - period) & (UsageEvent.at <= now))
             .group_by(UsageEvent.key, UsageEvent.model))
    return {(row["key_id"], row["model"]): int(row["tokens"] or 0) for row in dict_rows(query)}


def _per_hour(tokens: int, period: dt.timedelta) -> int:
    return round(tokens * 3600 / period.total_seconds())


def _runs_out_at(now: dt.datetime, left: int, spent: int, period: dt.timedelta) -> dt.datetime:
    # left / (spent / period), in whole microseconds so the arithmetic stays exact.
    micros = left * (period // dt.timedelta(microseconds=1)) // spent
    # A huge allowance at a trickle would pass the calendar's end; beyond any window is all we need.
    return now + min(dt.timedelta(microseconds=micros), FAR_FUTURE)
