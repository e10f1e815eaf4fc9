"""Server time of the dashboard's `/` and `/api/stats` over a large SQLite database.

Run:  .venv/bin/python bench/dashboard.py [--events N] [--db PATH] [--rebuild] [--runs N]

Uses the database `bench/reports.py` builds (10 million events over 365 days, 50 keys,
5 bots) when that script offers its builder; otherwise builds its own with bulk inserts
(default 2 million events, same shape) and says so. The database is cached under /tmp.
Each endpoint is asked `--runs` times over real HTTP on 127.0.0.1 (aiohttp's TestServer);
printed: the server's handling time (a middleware's clock) and the client's round trip,
as medians and 90th percentiles, against the 100 ms target.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from shared.accounting import ERROR_OUTCOMES, Outcome  # noqa: E402
from shared.config import parse_config  # noqa: E402
from shared.dashboard.app import create_app  # noqa: E402
from shared.db import connect_database  # noqa: E402
from shared.keys import sync_keys  # noqa: E402
from shared.models import utcnow  # noqa: E402
from shared.schema import ensure_schema  # noqa: E402

TARGET_MS = 100.0
KEYS, BOTS = 50, 5
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini"]
OPERATIONS = ["autoreply", "summary", "translate", "command"]
OUTCOMES = ["ok"] * 95 + ["rate_limited"] * 2 + ["server_error", "timeout", "interrupted"]
BATCH = 50_000


def bench_config(url: str):
    keys = [{"label": f"key-{i:02d}", "api_key": f"sk-bench-{i:02d}-" + "q" * 24, "reset": "utc-day",
             "daily_token_limit": 2_500_000} for i in range(KEYS)]
    return parse_config({"database": {"url": url}, "keys": keys}, "bench.toml", env={})


def build(path: Path, events: int, now: dt.datetime) -> None:
    """Events over the last 365 days, with the rollups and key counters they imply."""
    url = f"sqlite:///{path}"
    db = connect_database(url)
    ensure_schema(db)
    config = bench_config(url)
    ids = sync_keys(config).ids()
    rng = random.Random(7)
    span = 365 * 86_400
    conn = db.connection()
    insert = ("INSERT INTO usage_event (call_id, at, key_id, window_start, bot, operation, model, input_tokens, "
              "cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, duration_ms, outcome, "
              "error_code, chat_id, estimated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    started = time.perf_counter()
    for offset in range(0, events, BATCH):
        rows = []
        for i in range(offset, min(events, offset + BATCH)):
            at = now - dt.timedelta(seconds=rng.random() * span)
            outcome = rng.choice(OUTCOMES)
            spent = outcome in ("ok", "interrupted")
            tokens_in = rng.randint(200, 3_000) if spent else 0
            tokens_out = rng.randint(20, 600) if spent else 0
            rows.append((f"{i:032x}", at.isoformat(sep=" "), rng.choice(ids),
                         at.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(sep=" "),
                         f"bot-{rng.randrange(BOTS)}", rng.choice(OPERATIONS), rng.choice(MODELS), tokens_in,
                         tokens_in // 4, tokens_out, 0, tokens_in + tokens_out, (tokens_in * 150 + tokens_out * 600),
                         rng.randint(200, 4_000), outcome, "", rng.randint(1, 5_000) if rng.random() < 0.8 else None,
                         0))
        with db.atomic():
            conn.executemany(insert, rows)
        print(f"\r  {min(events, offset + BATCH):,} / {events:,} events", end="", flush=True)
    errors = ", ".join(f"'{o.value}'" for o in ERROR_OUTCOMES)
    sums = ("COUNT(*), SUM(outcome = 'ok'), SUM(outcome IN ({errors})), SUM(outcome = 'rate_limited'), "
            "SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(total_tokens), "
            "SUM(cost_nanousd), SUM(duration_ms)").format(errors=errors)
    columns = ("calls, ok_calls, error_calls, rate_hits, input_tokens, cached_tokens, output_tokens, "
               "reasoning_tokens, total_tokens, cost_nanousd, duration_ms")
    with db.atomic():
        db.execute_sql(f"INSERT INTO daily_rollup (day, key_id, bot, model, operation, {columns}) "
                       f"SELECT date(at), key_id, bot, model, operation, {sums} FROM usage_event "
                       "GROUP BY date(at), key_id, bot, model, operation")
        db.execute_sql(f"INSERT INTO chat_rollup (day, key_id, bot, chat_id, {columns}) "
                       f"SELECT date(at), key_id, bot, chat_id, {sums} FROM usage_event "
                       "WHERE chat_id IS NOT NULL GROUP BY date(at), key_id, bot, chat_id")
        today = now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(sep=" ")
        db.execute_sql(
            "UPDATE api_key SET window_start = ?, "
            "used_today = (SELECT COALESCE(SUM(total_tokens), 0) FROM usage_event e WHERE e.key_id = api_key.id "
            "AND e.window_start = ?), "
            "calls_today = (SELECT COUNT(*) FROM usage_event e WHERE e.key_id = api_key.id AND e.window_start = ?), "
            "total_tokens = (SELECT COALESCE(SUM(total_tokens), 0) FROM usage_event e WHERE e.key_id = api_key.id), "
            "total_calls = (SELECT COUNT(*) FROM usage_event e WHERE e.key_id = api_key.id), "
            "last_used_at = (SELECT MAX(at) FROM usage_event e WHERE e.key_id = api_key.id)",
            (today, today, today))
    db.execute_sql("ANALYZE")
    db.close()
    print(f"\r  built {events:,} events in {time.perf_counter() - started:.0f} s: {path}")


def database(args) -> tuple[Path, str]:
    """The 10-million-event database of bench/reports.py if it can build one, else our own."""
    try:
        from bench.reports import build_sqlite_database  # the reports benchmark's builder
    except ImportError:
        build_sqlite_database = None
    if build_sqlite_database is not None and args.events is None and args.db is None:
        return Path(build_sqlite_database()), "bench/reports.py's database"
    events = args.events or 2_000_000
    path = Path(args.db or f"/tmp/tokenpool-bench-dashboard-{events}.db")
    if args.rebuild or not path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        print(f"building our own database ({events:,} events; bench/reports.py offers no builder):")
        build(path, events, utcnow())
    return path, f"own database, {events:,} events"


async def measure(path: Path, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    url = f"sqlite:///{path}"
    connect_database(url)
    config = bench_config(url)
    server_ms: list[float] = []

    @web.middleware
    async def timed(request, handler):
        started = time.perf_counter()
        response = await handler(request)
        server_ms.append((time.perf_counter() - started) * 1000)
        return response

    app = create_app(config)
    app.middlewares.insert(0, timed)
    results = {}
    async with TestClient(TestServer(app)) as client:
        for path_ in ("/", "/api/stats"):
            for _ in range(3):                          # warm up: connection, templates, caches
                assert (await client.get(path_)).status == 200
            server_ms.clear()
            round_trips = []
            for _ in range(runs):
                started = time.perf_counter()
                response = await client.get(path_)
                await response.read()
                round_trips.append((time.perf_counter() - started) * 1000)
                assert response.status == 200
            results[path_] = (list(server_ms), round_trips)
    return results


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="build our own database with this many events")
    parser.add_argument("--db", help="SQLite file to use (built when missing)")
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    parser.add_argument("--runs", type=int, default=30, help="requests per endpoint (default 30)")
    args = parser.parse_args()
    path, source = database(args)
    results = asyncio.run(measure(path, args.runs))
    print(f"dashboard on SQLite, {source} ({path.stat().st_size / 1e6:,.0f} MB), {args.runs} requests each")
    print(f"{'endpoint':<12} {'server median':>14} {'server p90':>11} {'round trip median':>18}  target")
    for endpoint, (server, trips) in results.items():
        verdict = "ok" if statistics.median(server) < TARGET_MS else "OVER"
        print(f"{endpoint:<12} {statistics.median(server):>11.1f} ms {p90(server):>8.1f} ms "
              f"{statistics.median(trips):>15.1f} ms  < {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
