"""Report latency over a year of history: 10 million calls over 365 days, 50 keys, 5 bots.

    .venv/bin/python bench/reports.py                      # 10M events, SQLite and PostgreSQL
    .venv/bin/python bench/reports.py --events 200000      # a quick run
    .venv/bin/python bench/reports.py --backends sqlite --repeat 21

The database is built once with bulk inserts (executemany on SQLite, COPY on PostgreSQL):
events, the matching daily and per-chat rollups and the key rows with their counters, all
consistent. Keys rotate the way the worker's "sticky" policy uses them: bots share one key
until its 2.5M daily allowance is used, then move to the next (windows are UTC days).
The built database is kept (SQLite under /tmp/tokenpool-bench/, PostgreSQL in a schema of
TOKENPOOL_BENCH_PG_URL or TOKENPOOL_TEST_PG_URL), so re-runs only time the reports.

Each figure is the median of --repeat runs of the query plus its Telegram rendering, as
the bot would run it. Targets: .stats < 50 ms, .usage 365 < 200 ms.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import peewee  # noqa: E402

from shared.core.config import Config  # noqa: E402
from shared.core.db import backend_of, connect_database  # noqa: E402
from shared.core.models import ApiKey, ChatRollup, DailyRollup, Setting, UsageEvent  # noqa: E402
from shared.core.schema import ensure_schema  # noqa: E402
from shared.core.windows import EPOCH  # noqa: E402
from shared.reports.budgets import budget_report  # noqa: E402
from shared.reports.exports import export  # noqa: E402
from shared.reports.queries import recent_calls, stats_snapshot, usage_report  # noqa: E402
from shared.reports.render_telegram import (  # noqa: E402
    render_budget,
    render_recent,
    render_stats,
    render_usage,
)

BENCH_DIR = Path("/tmp/tokenpool-bench")
BUILD_VERSION = 1                # bump when the generated data changes shape
KEYS, BOTS, DAYS = 50, 5, 365
LIMIT = 2_500_000
MODELS = (("gpt-4o-mini", 0.8, (150, 75, 600)), ("gpt-4o", 0.1, (2_500, 1_250, 10_000)),
          ("gpt-4.1-mini", 0.1, (400, 100, 1_600)))       # nano-USD per input, cached, output token
OPERATIONS = (("autoreply", 0.7), ("summary", 0.2), ("translate", 0.1))
OUTCOMES = (("ok", 0.97), ("rate_limited", 0.015), ("server_error", 0.01), ("timeout", 0.005))
ERRORS = {"server_error", "timeout"}
CHATS_PER_BOT, ACTIVE_CHATS_PER_DAY = 600, 12
EVENT_COLUMNS = ("call_id", "at", "key_id", "window_start", "bot", "operation", "model", "input_tokens",
                 "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens", "cost_nanousd",
                 "duration_ms", "outcome", "error_code", "chat_id", "estimated")
SUMS = ("calls", "ok_calls", "error_calls", "rate_hits", "input_tokens", "cached_tokens", "output_tokens",
        "reasoning_tokens", "total_tokens", "cost_nanousd", "duration_ms")


def _pick(rnd: random.Random, table):
    x, acc = rnd.random(), 0.0
    for item in table:
        acc += item[1]
        if x < acc:
            return item
    return table[-1]


class History:
    """Generates the events in time order, one UTC day at a time, and sums what they add up to."""

    def __init__(self, events: int, end: dt.datetime, seed: int = 2026):
        self.events, self.end = events, end
        self.start = end - dt.timedelta(days=DAYS)
        self.rnd = random.Random(seed)
        self.rollups: dict[tuple, list[int]] = {}
        self.chat_rollups: dict[tuple, list[int]] = {}
        self.keys = {k: {"total_tokens": 0, "total_input": 0, "total_cached": 0, "total_output": 0,
                         "total_calls": 0, "total_rate_hits": 0, "total_errors": 0, "total_cost_nanousd": 0,
                         "last_used_at": None} for k in range(1, KEYS + 1)}
        self.today: dict[int, list[int]] = {}     # key -> [used, input, cached, output, calls, hits, errors, cost]

    def days(self):
        """Yield (day, list of event rows) for every UTC day touched, oldest first."""
        step = (self.end - self.start) / self.events
        i, day_rows, day = 0, [], None
        used: dict[int, int] = {}
        current = 0
        active: dict[int, list[int]] = {}
        rnd = self.rnd
        while i < self.events:
            at = (self.start + step * i).replace(microsecond=0)
            if at.date() != day:
                if day_rows:
                    yield day, day_rows
                day, day_rows, used = at.date(), [], {}
                current = (day.toordinal() * 7) % KEYS
                active = {b: [b * 1_000_000 + rnd.randrange(CHATS_PER_BOT) for _ in range(ACTIVE_CHATS_PER_DAY)]
                          for b in range(BOTS)}
            bot = rnd.randrange(BOTS)
            operation = _pick(rnd, OPERATIONS)[0]
            model, _, (p_in, p_cached, p_out) = _pick(rnd, MODELS)
            outcome = _pick(rnd, OUTCOMES)[0]
            if outcome == "ok":
                inp = rnd.randint(200, 2_000)
                cached = rnd.randint(0, inp // 2) if rnd.random() < 0.3 else 0
                out = rnd.randint(20, 400)
            else:
                inp = cached = out = 0
            total = inp + out
            while used.get(current + 1, 0) + total > LIMIT:
                current = (current + 1) % KEYS
            key = current + 1
            used[key] = used.get(key, 0) + total
            cost = (inp - cached) * p_in + cached * p_cached + out * p_out
            duration = rnd.randint(200, 4_000)
            chat = rnd.choice(active[bot]) if operation == "autoreply" else None
            bot_name = f"bot{bot + 1}"
            day_start = dt.datetime.combine(day, dt.time())
            day_rows.append((f"b{i:012d}", at, key, day_start, bot_name, operation, model, inp, cached, out, 0,
                             total, cost, duration, outcome, "" if outcome == "ok" else "e-" + outcome, chat, False))
            sums = (1, outcome == "ok", outcome in ERRORS, outcome == "rate_limited", inp, cached, out, 0, total,
                    cost, duration)
            _add(self.rollups, (day, key, bot_name, model, operation), sums)
            if chat is not None:
                _add(self.chat_rollups, (day, key, bot_name, chat), sums)
            k = self.keys[key]
            k["total_tokens"] += total
            k["total_input"] += inp
            k["total_cached"] += cached
            k["total_output"] += out
            k["total_calls"] += 1
            k["total_rate_hits"] += outcome == "rate_limited"
            k["total_errors"] += outcome in ERRORS
            k["total_cost_nanousd"] += cost
            k["last_used_at"] = at
            if day == self.end.date():
                t = self.today.setdefault(key, [0] * 8)
                for j, v in enumerate((total, inp, cached, out, 1, outcome == "rate_limited", outcome in ERRORS,
                                       cost)):
                    t[j] += v
            i += 1
        if day_rows:
            yield day, day_rows


def _add(table: dict, key: tuple, sums) -> None:
    row = table.get(key)
    if row is None:
        table[key] = [int(v) for v in sums]
    else:
        for j, v in enumerate(sums):
            row[j] += v


# --- loading -------------------------------------------------------------------------------------

def _copy(db, table: str, columns, rows) -> None:
    """PostgreSQL COPY ... FROM STDIN (CSV, with \\N for NULL)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(["\\N" if v is None else ("t" if v is True else "f" if v is False else v) for v in row])
    buffer.seek(0)
    with db.connection().cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                            buffer)


def _insert(db, table: str, columns, rows) -> None:
    if backend_of(db) == "postgres":
        _copy(db, table, columns, rows)
        return
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    db.connection().executemany(sql, [tuple(_sqlite_value(v) for v in row) for row in rows])


def _sqlite_value(value):
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def build(db, events: int, end: dt.datetime) -> None:
    history = History(events, end)
    started = time.perf_counter()
    ApiKey.insert_many([dict(id=k, fingerprint=f"bench{k:011d}", label=f"key{k:02d}", masked=f"sk-…{k:04d}",
                             position=k - 1, daily_token_limit=LIMIT, reset_mode="utc-day", window_anchor=EPOCH,
                             created_at=history.start) for k in range(1, KEYS + 1)]).execute()
    done = 0
    for day, rows in history.days():
        with db.atomic():
            _insert(db, "usage_event", EVENT_COLUMNS, rows)
        done += len(rows)
        if day.day == 1 or done == events:
            print(f"  {done:>12,} events, {day}  ({time.perf_counter() - started:.0f} s)", flush=True)
    with db.atomic():
        _insert(db, "daily_rollup", ("day", "key_id", "bot", "model", "operation") + SUMS,
                [key + tuple(sums) for key, sums in history.rollups.items()])
        _insert(db, "chat_rollup", ("day", "key_id", "bot", "chat_id") + SUMS,
                [key + tuple(sums) for key, sums in history.chat_rollups.items()])
    today_start = dt.datetime.combine(end.date(), dt.time())
    with db.atomic():
        for key, totals in history.keys.items():
            today = history.today.get(key)
            values = dict(totals)
            if today:
                values.update(dict(zip(("used_today", "input_today", "cached_today", "output_today", "calls_today",
                                        "rate_hits_today", "errors_today", "cost_today_nanousd"), today)),
                              window_start=today_start)
            ApiKey.update(**values).where(ApiKey.id == key).execute()
    if backend_of(db) == "postgres":
        db.execute_sql("SELECT setval(pg_get_serial_sequence('api_key', 'id'), %s)", (KEYS,))
    print(f"  built: {events:,} events, {len(history.rollups):,} daily rollups, "
          f"{len(history.chat_rollups):,} chat rollups in {time.perf_counter() - started:.0f} s", flush=True)


# --- the cached databases --------------------------------------------------------------------------

def _pg_url(schema: str) -> str:
    base = os.environ.get("TOKENPOOL_BENCH_PG_URL") or os.environ.get("TOKENPOOL_TEST_PG_URL") \
        or "postgresql://postgres@127.0.0.1:5432/test"
    parts = urlparse(base)
    query = f"options=-csearch_path%3D{schema}"
    return urlunparse(parts._replace(query=f"{parts.query}&{query}" if parts.query else query)), base


def open_bench_database(backend: str, events: int, *, rebuild: bool = False):
    """The bench database for `backend` with `events` events, built if needed: (db, end time)."""
    marker = {"version": BUILD_VERSION, "events": events}
    if backend == "sqlite":
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        path = BENCH_DIR / f"reports-{events}.db"
        if rebuild:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        schema = f"bench_reports_{events}"
        url, base = _pg_url(schema)
        admin = connect_database(base, bind=False)
        if rebuild:
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        admin.close()
    db = connect_database(url)
    ensure_schema(db)
    stored = Setting.get_or_none((Setting.scope == "bench") & (Setting.name == "reports"))
    if stored is not None and {k: v for k, v in json.loads(stored.value).items() if k != "end"} == marker:
        return db, dt.datetime.fromisoformat(json.loads(stored.value)["end"])
    if UsageEvent.select().exists() or ApiKey.select().exists():
        db.close()
        print(f"{backend}: the cached bench database is incomplete or stale; rebuilding", flush=True)
        return open_bench_database(backend, events, rebuild=True)
    end = dt.datetime(2026, 6, 30, 15, 30)
    print(f"{backend}: building the bench database ({events:,} events) at {url}", flush=True)
    if backend == "sqlite":
        db.execute_sql("PRAGMA synchronous = OFF")
    build(db, events, end)
    db.execute_sql("ANALYZE")
    Setting.create(scope="bench", name="reports", value=json.dumps({**marker, "end": end.isoformat()}))
    if backend == "sqlite":
        db.execute_sql("PRAGMA synchronous = NORMAL")
    return db, end


# --- timing -----------------------------------------------------------------------------------------

def median_ms(fn, repeat: int) -> float:
    fn()                                   # warm up (connection, caches, compiled queries)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cases(now: dt.datetime, config: Config):
    export_day = now.date() - dt.timedelta(days=1)
    return [
        (".stats", lambda: render_stats(stats_snapshot(now, config)), 50),
        (".usage 30", lambda: render_usage(usage_report(now, 30)), None),
        (".usage 365", lambda: render_usage(usage_report(now, 365)), 200),
        (".usage 365 by model", lambda: render_usage(usage_report(now, 365, "model")), None),
        (".usage 30 by chat", lambda: render_usage(usage_report(now, 30, "chat")), None),
        (".recent 20", lambda: render_recent(recent_calls(20), now), None),
        (".budget", lambda: render_budget(budget_report(now, config)), None),
        (f"export csv, one day ({export_day})", lambda: export(io.StringIO(), "csv", "calls", export_day, export_day),
         None),
        (f"export json, one day ({export_day})",
         lambda: export(io.StringIO(), "json", "calls", export_day, export_day), None),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rebuild", action="store_true", help="build the databases again")
    args = parser.parse_args()
    config = Config()
    results: dict[str, dict[str, float]] = {}
    targets: dict[str, int | None] = {}
    for backend in args.backends.split(","):
        try:
            db, now = open_bench_database(backend, args.events, rebuild=args.rebuild)
        except peewee.OperationalError as exc:
            print(f"{backend}: skipped ({str(exc).strip().splitlines()[0]})")
            continue
        rows = {"events": UsageEvent.select().count(), "daily rollups": DailyRollup.select().count(),
                "chat rollups": ChatRollup.select().count()}
        print(f"{backend}: " + ", ".join(f"{n:,} {name}" for name, n in rows.items()) + f"; now = {now}")
        for name, fn, target in cases(now, config):
            results.setdefault(name, {})[backend] = median_ms(fn, args.repeat)
            targets[name] = target
        db.close()
    backends = [b for b in args.backends.split(",") if any(b in r for r in results.values())]
    print(f"\nmedian of {args.repeat} runs, ms (query + Telegram rendering), {args.events:,} events")
    print(f"{'report':<36}" + "".join(f"{b:>12}" for b in backends) + f"{'target':>10}")
    for name, by_backend in results.items():
        target = targets[name]
        cells = "".join(f"{by_backend.get(b, float('nan')):>12.1f}" for b in backends)
        verdict = ""
        if target is not None:
            worst = max(by_backend.values())
            verdict = f"{'< ' + str(target):>10}  {'ok' if worst < target else 'MISSED'} ({worst / target:.2f}x)"
        print(f"{name:<36}{cells}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
