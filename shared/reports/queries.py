"""Report queries: plain values out of the database, for every renderer.

Two meanings of "today", on purpose:
- the pool's *today* (`stats_snapshot`, `KeyView.usage`) is each key's current 24-hour
  window, read from the key's counters (`shared.core.status.window_usage`): what is left to
  spend before each key resets;
- day-based reports (`usage_report`, `day_totals`, budgets, charts) use UTC calendar days
  from the daily rollups, so they stay fast over years and survive event retention.

Only `recent_calls`, `calls_between` and `calls_per_minute` read the per-call events.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, fields
from typing import Any

import peewee as pw

from shared.core.liveness import is_alive, is_stopped
from shared.core.models import (
    ApiKey,
    ChatRollup,
    ChatState,
    DailyRollup,
    Heartbeat,
    KeyRanking,
    UsageEvent,
)
from shared.core.query_rows import dict_rows, one_dict, one_tuple, tuple_rows
from shared.core.status import (
    ELIGIBLE,
    Status,
    WindowUsage,
    frees_up_at,
    key_status,
    window_usage,
)
from shared.reports.allowance_views import AllowanceView, allowance_views
from shared.reports.forecast import (
    KeyForecast,
    PoolForecast,
    forecast_views,
    recent_tokens_by_key,
)

# Keys whose allowance left this window cannot be spent.
SPENT = frozenset({Status.DISABLED, Status.INVALID, Status.EXHAUSTED})

# A process whose last heartbeat is older than this is shown as down.


class ReportError(ValueError):
    """A report was asked for with arguments it cannot take; the message says which."""


# --- keys --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyView:
    """One key as every report shows it."""
    id: int
    position: int
    label: str
    masked: str
    status: Status
    usage: WindowUsage
    total_tokens: int
    last_used_at: dt.datetime | None
    last_error: str
    in_config: bool
    cost_today_nanousd: int = 0
    total_calls: int = 0
    total_cost_nanousd: int = 0
    invalid_reason: str = ""
    frees_up_at: dt.datetime | None = None     # when an ineligible key can be used again
    rl_remaining_requests: int | None = None
    rl_remaining_tokens: int | None = None
    unpriced_today: int = 0                    # tokens of models without a known price
    total_unpriced: int = 0

    @property
    def number(self) -> int:
        """The key's number as people count it: its place in config, from 1."""
        return self.position + 1


def key_views(now: dt.datetime, low_threshold: int, *, include_removed: bool = False) -> list[KeyView]:
    query = ApiKey.select().order_by(ApiKey.position, ApiKey.id)
    if not include_removed:
        query = query.where(ApiKey.in_config == True)  # noqa: E712
    return [key_view(row, now, low_threshold) for row in query]


def key_view(row: ApiKey, now: dt.datetime, low_threshold: int) -> KeyView:
    usage = window_usage(row, now)
    current = usage.window_start == row.window_start
    status = key_status(row, now, low_threshold)
    return KeyView(id=row.id, position=row.position, label=row.label, masked=row.masked,
                   status=status, usage=usage,
                   total_tokens=row.total_tokens, last_used_at=row.last_used_at,
                   last_error=row.last_error, in_config=row.in_config,
                   cost_today_nanousd=row.cost_today_nanousd if current else 0,
                   total_calls=row.total_calls, total_cost_nanousd=row.total_cost_nanousd,
                   invalid_reason=row.invalid_reason,
                   frees_up_at=None if status in ELIGIBLE else frees_up_at(row, now),
                   rl_remaining_requests=row.rl_remaining_requests,
                   rl_remaining_tokens=row.rl_remaining_tokens,
                   unpriced_today=row.unpriced_today if current else 0, total_unpriced=row.total_unpriced)


# --- the .stats panel --------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessHealth:
    """One worker or bot process, from its heartbeat."""
    kind: str
    name: str
    host: str
    pid: int
    started_at: dt.datetime
    last_seen: dt.datetime
    alive: bool
    since_seen: dt.timedelta
    stopped: bool = False           # stopped cleanly: neither up nor down

    @property
    def state(self) -> str:
        return "up" if self.alive else "stopped" if self.stopped else "down"


@dataclass(frozen=True)
class PoolToday:
    """The pool's current windows added up (each key's own 24 h window, not a UTC day).

    `left` counts only keys that can still spend this window (not disabled, invalid or
    exhausted), so used + left may be less than `limit`, the sum of all keys' limits.
    """
    used: int
    left: int
    limit: int
    calls: int
    errors: int
    rate_hits: int
    cost_nanousd: int
    lifetime_tokens: int        # every key ever registered, removed ones included
    lifetime_calls: int
    lifetime_cost_nanousd: int
    unpriced_tokens: int = 0            # tokens of models without a known price
    lifetime_unpriced_tokens: int = 0

    @property
    def success_rate(self) -> float | None:
        """Share of calls that were neither errors nor rate-limited (None without calls)."""
        return (self.calls - self.errors - self.rate_hits) / self.calls if self.calls else None


@dataclass(frozen=True)
class StatsSnapshot:
    """Everything the `.stats` panel shows, combined across all bots."""
    now: dt.datetime
    keys: list[KeyView]
    in_use: KeyView | None
    today: PoolToday
    processes: list[ProcessHealth]
    ranking_generation: int | None
    forecasts: dict[int, KeyForecast]       # by key id, at the pace of the last hour
    pool_forecast: PoolForecast
    allowances: list[AllowanceView] = field(default_factory=list)   # shared pools, with their keys
    unpriced_models: list[str] = field(default_factory=list)        # models no price is known for

    @property
    def daily_limit(self) -> int | None:
        """The per-key daily limit when every key has the same one, else None."""
        limits = {k.usage.limit for k in self.keys}
        return limits.pop() if len(limits) == 1 else None


def stats_snapshot(now: dt.datetime, config) -> StatsSnapshot:
    """Gather the `.stats` panel: keys in config, key in use, pool totals, process health."""
    keys = key_views(now, config.pool.low_threshold)
    lifetime = one_tuple(ApiKey.select(pw.fn.SUM(ApiKey.total_tokens), pw.fn.SUM(ApiKey.total_calls),
                                       pw.fn.SUM(ApiKey.total_cost_nanousd), pw.fn.SUM(ApiKey.total_unpriced)))
    today = PoolToday(
        used=sum(k.usage.used for k in keys), left=sum(k.usage.left for k in keys if k.status not in SPENT),
        limit=sum(k.usage.limit for k in keys), calls=sum(k.usage.calls for k in keys),
        errors=sum(k.usage.errors for k in keys), rate_hits=sum(k.usage.rate_hits for k in keys),
        cost_nanousd=sum(k.cost_today_nanousd for k in keys),
        lifetime_tokens=int(lifetime[0] or 0), lifetime_calls=int(lifetime[1] or 0),
        lifetime_cost_nanousd=int(lifetime[2] or 0),
        unpriced_tokens=sum(k.unpriced_today for k in keys), lifetime_unpriced_tokens=int(lifetime[3] or 0))
    ranking = KeyRanking.select().order_by(KeyRanking.generation.desc()).first()
    forecasts, pool_forecast = forecast_views(keys, recent_tokens_by_key(now), now)
    return StatsSnapshot(now=now, keys=keys, in_use=_key_in_use(keys, ranking), today=today,
                         processes=process_health(now), ranking_generation=ranking and ranking.generation,
                         forecasts=forecasts, pool_forecast=pool_forecast, allowances=allowance_views(now),
                         unpriced_models=unpriced_models() if today.lifetime_unpriced_tokens else [])


def _key_in_use(keys: list[KeyView], ranking: KeyRanking | None) -> KeyView | None:
    """The first key of the newest published ranking, else the first eligible key."""
    by_id = {k.id: k for k in keys}
    if ranking is not None:
        for key_id in json.loads(ranking.key_ids or "[]"):
            if key_id in by_id:
                return by_id[key_id]
    return next((k for k in keys if k.status in ELIGIBLE), None)


def process_health(now: dt.datetime) -> list[ProcessHealth]:
    """Workers first, then bots, each by name."""
    rows = Heartbeat.select().order_by(Heartbeat.kind.desc(), Heartbeat.name)
    return [ProcessHealth(kind=h.kind, name=h.name, host=h.host, pid=h.pid, started_at=h.started_at,
                          last_seen=h.last_seen, alive=is_alive(h, now),
                          since_seen=max(dt.timedelta(0), now - h.last_seen), stopped=is_stopped(h))
            for h in rows]


# --- sums over the daily rollups -----------------------------------------------------------------

@dataclass(frozen=True)
class Totals:
    """Sums of calls, tokens, cost and time, as kept by the rollups."""
    calls: int = 0
    ok_calls: int = 0
    error_calls: int = 0
    rate_hits: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_nanousd: int = 0
    unpriced_tokens: int = 0     # tokens of models without a known price (not in cost_nanousd)
    duration_ms: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.ok_calls / self.calls if self.calls else None

    @property
    def avg_ms(self) -> int | None:
        return round(self.duration_ms / self.calls) if self.calls else None

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


TOTAL_FIELDS = tuple(f.name for f in fields(Totals))


def _sums(model) -> list:
    return [pw.fn.COALESCE(pw.fn.SUM(getattr(model, name)), 0).alias(name) for name in TOTAL_FIELDS]


def _totals(row: dict) -> Totals:
    return Totals(**{name: int(row[name]) for name in TOTAL_FIELDS})


def utc_day(now: dt.datetime) -> dt.date:
    return now.date()


def day_totals(start: dt.date, end: dt.date, *, key_id: int | None = None) -> Totals:
    """Sums over the UTC days start..end (both included), for the pool or one key."""
    query = DailyRollup.select(*_sums(DailyRollup)).where(DailyRollup.day.between(start, end))
    if key_id is not None:
        query = query.where(DailyRollup.key == key_id)
    return _totals(one_dict(query))


def unpriced_models(start: dt.date | None = None, end: dt.date | None = None) -> list[str]:
    """The models with unpriced tokens (over the UTC days start..end, or ever), by name."""
    query = (DailyRollup.select(DailyRollup.model).distinct()
             .where(DailyRollup.unpriced_tokens > 0).order_by(DailyRollup.model))
    if start is not None and end is not None:
        query = query.where(DailyRollup.day.between(start, end))
    return [row[0] for row in tuple_rows(query)]


def first_usage_day() -> dt.date | None:
    """The first UTC day with any recorded usage (None on an empty database)."""
    day = DailyRollup.select(pw.fn.MIN(DailyRollup.day)).scalar()
    if day is None or isinstance(day, dt.date):
        return day
    return dt.date.fromisoformat(str(day)[:10])       # SQLite hands back text


def key_day_totals(start: dt.date, end: dt.date) -> dict[int, Totals]:
    """Sums over the UTC days start..end, by key id (keys without rollups are left out)."""
    query = (DailyRollup.select(DailyRollup.key.alias("key_id"), *_sums(DailyRollup))
             .where(DailyRollup.day.between(start, end)).group_by(DailyRollup.key))
    return {row["key_id"]: _totals(row) for row in dict_rows(query)}


# --- usage: last N days, grouped -----------------------------------------------------------------

GROUPINGS = ("day", "key", "model", "operation", "bot", "chat")
_ALIASES = {"op": "operation", "ops": "operation", "days": "day", "keys": "key", "models": "model",
            "operations": "operation", "bots": "bot", "chats": "chat"}
MAX_DAYS = 3660


def grouping(name: str) -> str:
    """'op' -> 'operation'; raises ReportError for a grouping we do not know."""
    by = _ALIASES.get(name.lower(), name.lower())
    if by not in GROUPINGS:
        raise ReportError(f"cannot group by '{name}' (use one of: {', '.join(GROUPINGS)})")
    return by


@dataclass(frozen=True)
class UsageRow:
    group: str          # the day (YYYY-MM-DD), key label, model, operation, bot or chat name (or id)
    totals: Totals
    detail: str = ""    # the masked key, when grouped by key; the chat id, when grouped by a named chat


@dataclass(frozen=True)
class UsageReport:
    """Usage over the UTC days start..end, grouped `by` one dimension.

    By day: every day of the range, newest first (zero days included). Otherwise: groups by
    tokens used, most first, at most `top` of them (`more` counts the groups left out).
    `total` is the whole range, all calls (also when grouped by chat: calls without a chat
    count in the total but in no chat row).
    """
    by: str
    days: int
    start: dt.date
    end: dt.date
    rows: list[UsageRow]
    total: Totals
    more: int = 0
    unpriced_models: list[str] = field(default_factory=list)


def usage_report(now: dt.datetime, days: int = 30, by: str = "day", *, top: int | None = None) -> UsageReport:
    by = grouping(by)
    if not 1 <= days <= MAX_DAYS:
        raise ReportError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    if top is not None and top < 1:
        raise ReportError(f"top must be 1 or more, not {top}")
    end = utc_day(now)
    start = end - dt.timedelta(days=days - 1)
    rows = _grouped(by, start, end)
    # Every call is in exactly one group, except by chat (calls without a chat are in none).
    total = day_totals(start, end) if by == "chat" else sum((r.totals for r in rows), Totals())
    more = 0
    if by == "day":
        found = {row.group: row for row in rows}
        rows = [found.get(day.isoformat()) or UsageRow(day.isoformat(), Totals())
                for day in (end - dt.timedelta(days=i) for i in range(days))]
    else:
        rows.sort(key=lambda r: (-r.totals.total_tokens, -r.totals.calls, r.group))
        if top is not None and len(rows) > top:
            rows, more = rows[:top], len(rows) - top
    models = unpriced_models(start, end) if total.unpriced_tokens else []
    return UsageReport(by=by, days=days, start=start, end=end, rows=rows, total=total, more=more,
                       unpriced_models=models)


def _grouped(by: str, start: dt.date, end: dt.date) -> list[UsageRow]:
    query: pw.ModelSelect[Any]
    if by == "chat":
        query = (ChatRollup.select(ChatRollup.chat_id.alias("g"), *_sums(ChatRollup))
                 .where(ChatRollup.day.between(start, end)).group_by(ChatRollup.chat_id))
        rows = list(dict_rows(query))
        names = chat_names([row["g"] for row in rows])
        return [_chat_row(row["g"], _totals(row), names) for row in rows]
    if by == "key":
        query = (DailyRollup.select(DailyRollup.key.alias("g"), *_sums(DailyRollup))
                 .where(DailyRollup.day.between(start, end)).group_by(DailyRollup.key))
        keys = {k.id: k for k in ApiKey.select(ApiKey.id, ApiKey.label, ApiKey.masked)}
        return [UsageRow(keys[row["g"]].label, _totals(row), keys[row["g"]].masked) for row in dict_rows(query)]
    column = getattr(DailyRollup, by)
    query = (DailyRollup.select(column.alias("g"), *_sums(DailyRollup))
             .where(DailyRollup.day.between(start, end)).group_by(column))
    return [UsageRow(_day_text(row["g"]) if by == "day" else row["g"], _totals(row)) for row in dict_rows(query)]


def key_top_groups(now: dt.datetime, by: str, top: int = 3) -> dict[int, list[UsageRow]]:
    """Per key id, today's (UTC day) top `top` operations or chats by tokens, from the rollups."""
    by = grouping(by)
    sources: dict[str, tuple[type[DailyRollup] | type[ChatRollup], pw.Field]] = {
        "operation": (DailyRollup, DailyRollup.operation), "chat": (ChatRollup, ChatRollup.chat_id)}
    model, column = sources[by]
    query = (model.select(model.key.alias("key_id"), column.alias("g"), *_sums(model))
             .where(model.day == utc_day(now)).group_by(model.key, column))
    groups: dict[int, list[UsageRow]] = {}
    found = list(dict_rows(query))
    names = chat_names([row["g"] for row in found]) if by == "chat" else {}
    for row in found:
        usage_row = _chat_row(row["g"], _totals(row), names) if by == "chat" else UsageRow(str(row["g"]), _totals(row))
        groups.setdefault(row["key_id"], []).append(usage_row)
    for rows in groups.values():
        rows.sort(key=lambda r: (-r.totals.total_tokens, -r.totals.calls, r.group))
        del rows[top:]
    return groups


def chat_names(chat_ids) -> dict[int, str]:
    """Chat id -> the name people know it by ("Alice (@alice_w)"), as the bots last saw it."""
    ids = sorted({int(i) for i in chat_ids if i is not None})
    names: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        query = (ChatState.select(ChatState.chat_id, ChatState.label, ChatState.username)
                 .where(ChatState.chat_id.in_(ids[start:start + 500])).order_by(ChatState.updated_at))
        for row in query:
            label, username = row.label or "", row.username or ""
            name = f"{label} (@{username})" if label and username else label or (f"@{username}" if username else "")
            if name:
                names[row.chat_id] = name
    return names


def _chat_row(chat_id, totals: Totals, names: dict[int, str]) -> UsageRow:
    """A chat's row: its name (the id when the bots never learnt one) and the id beside it."""
    name = names.get(int(chat_id))
    return UsageRow(name, totals, str(chat_id)) if name else UsageRow(str(chat_id), totals)


def _day_text(value) -> str:
    """A DateField value as YYYY-MM-DD (SQLite hands grouped dates back as text)."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]


def daily_tokens_by_key(now: dt.datetime, days: int) -> tuple[list[dt.date], dict[int, list[int]]]:
    """Tokens per UTC day and key over the last `days` days (oldest first), for charts."""
    return daily_by_key(now, days, DailyRollup.total_tokens)


def daily_cost_by_key(now: dt.datetime, days: int) -> tuple[list[dt.date], dict[int, list[int]]]:
    """Cost (nano-USD) per UTC day and key over the last `days` days (oldest first), for charts."""
    return daily_by_key(now, days, DailyRollup.cost_nanousd)


def daily_by_key(now: dt.datetime, days: int, column) -> tuple[list[dt.date], dict[int, list[int]]]:
    end = utc_day(now)
    start = end - dt.timedelta(days=days - 1)
    series_days = [start + dt.timedelta(days=i) for i in range(days)]
    index = {day.isoformat(): i for i, day in enumerate(series_days)}
    query = (DailyRollup.select(DailyRollup.day, DailyRollup.key.alias("key_id"), pw.fn.SUM(column).alias("amount"))
             .where(DailyRollup.day.between(start, end)).group_by(DailyRollup.day, DailyRollup.key))
    series: dict[int, list[int]] = {}
    for row in dict_rows(query):
        series.setdefault(row["key_id"], [0] * days)[index[_day_text(row["day"])]] = int(row["amount"] or 0)
    return series_days, series


# --- rollup rows, for exports --------------------------------------------------------------------

@dataclass(frozen=True)
class RollupView:
    """One daily rollup row: a UTC day x key x bot x model x operation."""
    day: dt.date
    key_label: str
    key_masked: str
    bot: str
    model: str
    operation: str
    totals: Totals


def rollups_between(start: dt.date, end: dt.date) -> list[RollupView]:
    query = (DailyRollup.select(DailyRollup, ApiKey.label, ApiKey.masked).join(ApiKey)
             .where(DailyRollup.day.between(start, end))
             .order_by(DailyRollup.day, ApiKey.position, ApiKey.id, DailyRollup.bot, DailyRollup.model,
                       DailyRollup.operation))
    return [RollupView(day=r.day, key_label=r.key.label, key_masked=r.key.masked, bot=r.bot, model=r.model,
                       operation=r.operation, totals=Totals(**{n: getattr(r, n) for n in TOTAL_FIELDS}))
            for r in query]


# --- calls (events) ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallView:
    """One tracked call, with its key shown by label and masked form."""
    id: int
    call_id: str
    at: dt.datetime
    bot: str
    operation: str
    model: str
    key_label: str
    key_masked: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_nanousd: int
    unpriced_tokens: int
    duration_ms: int
    outcome: str
    error_code: str
    chat_id: int | None
    estimated: bool
    chat_name: str = ""     # the chat's name, when the bots learnt it


_CALL_COLUMNS = (UsageEvent.id, UsageEvent.call_id, UsageEvent.at, UsageEvent.bot, UsageEvent.operation,
                 UsageEvent.model, ApiKey.label, ApiKey.masked, UsageEvent.input_tokens,
                 UsageEvent.cached_tokens, UsageEvent.output_tokens, UsageEvent.reasoning_tokens,
                 UsageEvent.total_tokens, UsageEvent.cost_nanousd, UsageEvent.unpriced_tokens, UsageEvent.duration_ms,
                 UsageEvent.outcome, UsageEvent.error_code, UsageEvent.chat_id, UsageEvent.estimated)


def _call_views(query) -> list[CallView]:
    """The calls `query` reads (`_CALL_COLUMNS`: chat id and estimated last), each with its chat's name."""
    rows = list(tuple_rows(query))
    names = chat_names(row[-2] for row in rows if row[-2] is not None)
    return [CallView(*row[:-1] + (bool(row[-1]), names.get(row[-2], ""))) for row in rows]


MAX_RECENT = 1000


def recent_calls(limit: int = 20) -> list[CallView]:
    """The newest `limit` calls, newest first."""
    if not 1 <= limit <= MAX_RECENT:
        raise ReportError(f"the number of calls must be between 1 and {MAX_RECENT}, not {limit}")
    query = (UsageEvent.select(*_CALL_COLUMNS).join(ApiKey)
             .order_by(UsageEvent.at.desc(), UsageEvent.id.desc()).limit(limit))
    return _call_views(query)


def calls_between(start: dt.datetime, end: dt.datetime, *, batch: int = 5000):
    """Every call with start <= at < end, oldest first, read in batches (an iterator)."""
    last = (start, 0)
    while True:
        at, last_id = last
        query = (UsageEvent.select(*_CALL_COLUMNS).join(ApiKey)
                 .where((UsageEvent.at >= at) & (UsageEvent.at < end)
                        & ((UsageEvent.at > at) | (UsageEvent.id > last_id)))
                 .order_by(UsageEvent.at, UsageEvent.id).limit(batch))
        views = _call_views(query)
        yield from views
        if len(views) < batch:
            return
        last = (views[-1].at, views[-1].id)


def calls_per_minute(now: dt.datetime, minutes: int = 1) -> float:
    """Calls recorded in the last `minutes` minutes, per minute."""
    since = now - dt.timedelta(minutes=minutes)
    count = UsageEvent.select().where((UsageEvent.at > since) & (UsageEvent.at <= now)).count()
    return count / minutes
