"""Server time of the dashboard's `/` and `/api/stats` over a large SQLite database.

Run:  .venv/bin/python bench/dashboard.py [--events N] [--runs N]

The database is the one `bench/reports.py` builds and caches under /tmp/tokenpool-bench/
(10 million events over 365 days, 50 keys, 5 bots; built here with its builder when
missing, which takes a while). Each endpoint is asked `--runs` times over real HTTP on
127.0.0.1 (aiohttp's TestServer), with the dashboard's clock at the database's "now".
Printed: the server's handling time (a middleware's clock) and the client's round trip,
as medians and 90th percentiles, against the 100 ms target.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import sqlite3
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bench.reports import BENCH_DIR, open_bench_database  # noqa: E402
from shared.core.config import Config, DatabaseConfig  # noqa: E402
from shared.core.db import connect_database  # noqa: E402
from shared.dashboard.server import create_app  # noqa: E402

TARGET_MS = 100.0


def bench_database(events: int) -> tuple[str, dt.datetime]:
    """(url, now) of bench/reports.py's SQLite database, built with its builder when missing."""
    path = BENCH_DIR / f"reports-{events}.db"
    if path.exists():
        # A file without the builder's "done" mark is being built by another run right now (or
        # was cut short): opening it through the builder would start it over, so stop here.
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                done = conn.execute("SELECT 1 FROM setting WHERE scope = 'bench' AND name = 'reports'").fetchone()
        except sqlite3.Error:
            done = None
        if not done:
            sys.exit(f"{path} is not finished: wait for the bench/reports.py run that is building it "
                     "(or run `bench/reports.py --backends sqlite --rebuild`)")
    db, now = open_bench_database("sqlite", events)
    db.close()
    return f"sqlite:///{path}", now


async def measure(url: str, now: dt.datetime, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    connect_database(url)
    config = dataclasses.replace(Config(), database=DatabaseConfig(url=url))
    server_ms: list[float] = []

    @web.middleware
    async def timed(request, handler):
        started = time.perf_counter()
        response = await handler(request)
        server_ms.append((time.perf_counter() - started) * 1000)
        return response

    app = create_app(config, clock=lambda: now)
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
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the database (default 10M)")
    parser.add_argument("--runs", type=int, default=30, help="requests per endpoint (default 30)")
    args = parser.parse_args()
    url, now = bench_database(args.events)
    results = asyncio.run(measure(url, now, args.runs))
    size = os.path.getsize(url.removeprefix("sqlite:///")) / 1e6
    print(f"dashboard on SQLite, bench/reports.py's database: {args.events:,} events ({size:,.0f} MB), "
          f"now = {now}, {args.runs} requests each")
    print(f"{'endpoint':<12} {'server median':>14} {'server p90':>11} {'round trip median':>18}  target")
    for endpoint, (server, trips) in results.items():
        verdict = "ok" if statistics.median(server) < TARGET_MS else "OVER"
        print(f"{endpoint:<12} {statistics.median(server):>11.1f} ms {p90(server):>8.1f} ms "
              f"{statistics.median(trips):>15.1f} ms  < {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
