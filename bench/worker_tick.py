"""Worker tick time at 100, 1,000 and 10,000 keys, on SQLite and PostgreSQL.

    .venv/bin/python bench/worker_tick.py [--keys 100,1000,10000] [--ticks 15] [--backends sqlite,postgres]

PostgreSQL: $TOKENPOOL_TEST_PG_URL or postgresql://postgres@127.0.0.1:5432/test, in a schema
of its own that is dropped afterwards. Per size it times, as medians of --ticks ticks:
  idle  - nothing changed since the last tick (the steady state; target < 100 ms at 10,000 keys)
  busy  - 20 calls recorded on random keys between ticks (statuses, ranking re-published)
and once each:
  cold  - the first tick of a new leader (every key evaluated, statuses stored, ranking published)
  reset - the tick after every used key's window ended (resets persisted in bulk)
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import uuid
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import peewee  # noqa: E402
from playhouse import db_url as pw_db_url  # noqa: E402

from shared.core.accounting import CallRecord, record_call  # noqa: E402
from shared.core.config import parse_config  # noqa: E402
from shared.core.db import connect_database  # noqa: E402
from shared.core.models import ApiKey, KeyRanking, KeyReset  # noqa: E402
from shared.core.pricing import Pricer  # noqa: E402
from shared.core.schema import ensure_schema  # noqa: E402
from shared.core.windows import WINDOW  # noqa: E402
from worker.tick import Ticker  # noqa: E402

ANCHOR = dt.datetime(2026, 3, 1, 0, 0, 0)
LIMIT = 2_500_000


def populate(n: int, now: dt.datetime) -> None:
    """n keys registered in bulk: a third unused, most partly used, some LOW, some exhausted."""
    rng = random.Random(n)
    rows = []
    for i in range(n):
        used = rng.choice([0, 0, rng.randint(1, 1_900_000), rng.randint(2_100_000, 2_499_999), LIMIT])
        rows.append({"fingerprint": f"{i:016x}", "label": f"key{i}", "masked": f"sk-…{i % 10000:04d}",
                     "position": i, "daily_token_limit": LIMIT, "reset_mode": "rolling",
                     "window_anchor": ANCHOR, "created_at": ANCHOR, "used_today": used,
                     "calls_today": 1 if used else 0, "window_start": ANCHOR if used else None,
                     "last_used_at": ANCHOR + dt.timedelta(seconds=i) if used else None, "status": "FRESH"})
    with ApiKey._meta.database.atomic():
        for i in range(0, n, 500):
            ApiKey.insert_many(rows[i:i + 500]).execute()


def measure(url: str, n: int, ticks: int) -> dict[str, float]:
    db = connect_database(url)
    ensure_schema(db)
    now = ANCHOR + dt.timedelta(hours=12)
    populate(n, now)
    config = parse_config({"worker": {"tick_seconds": 2.0, "lease_seconds": 3600.0}}, env={})
    ticker = Ticker(config, name="bench", holder="bench")
    ticker.started = True              # keys were registered in bulk above, not from a config
    times = {}
    times["cold"] = ticker.tick(now).seconds
    idle = []
    for t in range(ticks):
        idle.append(ticker.tick(now + dt.timedelta(seconds=t + 1)).seconds)
    times["idle"] = statistics.median(idle)
    rng = random.Random(1)
    pricer = Pricer()
    busy = []
    for t in range(ticks):
        at = now + dt.timedelta(seconds=100 + t)
        for _ in range(20):
            record_call(CallRecord(key_id=rng.randint(1, n), bot="bench", operation="autoreply",
                                   model="gpt-4o-mini", input_tokens=500, output_tokens=200, at=at),
                        anchor=ANCHOR, pricer=pricer)
        busy.append(ticker.tick(at + dt.timedelta(milliseconds=500)).seconds)
    times["busy"] = statistics.median(busy)
    report = ticker.tick(ANCHOR + WINDOW + dt.timedelta(seconds=1))
    times["reset"] = report.seconds
    times["resets"] = report.resets
    assert KeyReset.select().count() == report.resets
    assert KeyRanking.select().count() >= 2
    db.close()
    return times


def sqlite_url(directory: str, n: int) -> str:
    return f"sqlite:///{os.path.join(directory, f'bench-{n}.db')}"


class PostgresSchema:
    def __init__(self, base: str):
        self.base = base
        self.name = "bench_" + uuid.uuid4().hex[:10]
        self.admin = pw_db_url.connect(base)

    def __enter__(self) -> str:
        self.admin.execute_sql(f"CREATE SCHEMA {self.name}")
        parts = urlparse(self.base)
        query = f"options=-csearch_path%3D{self.name}"
        return urlunparse(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))

    def __exit__(self, *exc) -> None:
        self.admin.execute_sql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        self.admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="100,1000,10000")
    parser.add_argument("--ticks", type=int, default=15)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    sizes = [int(x) for x in args.keys.split(",")]
    pg_base = os.environ.get("TOKENPOOL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    print(f"{'backend':9} {'keys':>6} {'idle ms':>8} {'busy ms':>8} {'cold ms':>8} {'reset ms':>9} {'resets':>7}")
    for backend in args.backends.split(","):
        results = {}
        for n in sizes:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    results[n] = measure(sqlite_url(tmp, n), n, args.ticks)
            else:
                try:
                    with PostgresSchema(pg_base) as url:
                        results[n] = measure(url, n, args.ticks)
                except peewee.OperationalError as exc:
                    print(f"postgres: unreachable ({str(exc).strip().splitlines()[0]}); skipped")
                    break
            r = results[n]
            print(f"{backend:9} {n:>6} {r['idle'] * 1000:>8.1f} {r['busy'] * 1000:>8.1f} {r['cold'] * 1000:>8.1f} "
                  f"{r['reset'] * 1000:>9.1f} {r['resets']:>7}", flush=True)
        for small, large in zip(sizes, sizes[1:]):
            if small in results and large in results:
                print(f"{backend:9} growth {small}->{large} keys (x{large // small}): "
                      + ", ".join(f"{k} x{results[large][k] / results[small][k]:.1f}"
                                  for k in ("idle", "busy", "cold", "reset")))
        if max(sizes) >= 10_000 and 10_000 in results:
            verdict = "meets" if results[10_000]["idle"] < 0.1 and results[10_000]["busy"] < 0.1 else "MISSES"
            print(f"{backend:9} 10,000 keys: {verdict} the < 100 ms per tick target (idle and busy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
