"""record_call throughput and latency on SQLite, beside a raw-sqlite3 loop doing the same
statements per transaction: one UPDATE of the key, one INSERT of the event, the daily
rollup upsert and (every call here has a chat) the chat rollup upsert.
Run:  .venv/bin/python bench/accounting.py [--calls N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.core.accounting import CallRecord, record_call  # noqa: E402
from shared.core.config import parse_config  # noqa: E402
from shared.core.db import connect_database  # noqa: E402
from shared.core.keys import sync_keys  # noqa: E402
from shared.core.models import ApiKey  # noqa: E402
from shared.core.pricing import Pricer  # noqa: E402
from shared.core.schema import ensure_schema  # noqa: E402
from shared.core.windows import window_start  # noqa: E402

KEYS = 10
MODELS = ["gpt-4o-mini", "gpt-4o"]
OPS = ["autoreply", "summary"]

RAW_UPDATE = """UPDATE api_key SET
 used_today = CASE WHEN window_start = :ws THEN used_today + :total
   WHEN window_start > :ws THEN used_today ELSE :total END,
 input_today = CASE WHEN window_start = :ws THEN input_today + :inp
   WHEN window_start > :ws THEN input_today ELSE :inp END,
 cached_today = CASE WHEN window_start = :ws THEN cached_today + :cached
   WHEN window_start > :ws THEN cached_today ELSE :cached END,
 output_today = CASE WHEN window_start = :ws THEN output_today + :out
   WHEN window_start > :ws THEN output_today ELSE :out END,
 calls_today = CASE WHEN window_start = :ws THEN calls_today + 1 WHEN window_start > :ws THEN calls_today ELSE 1 END,
 rate_hits_today = CASE WHEN window_start = :ws THEN rate_hits_today
   WHEN window_start > :ws THEN rate_hits_today ELSE 0 END,
 errors_today = CASE WHEN window_start = :ws THEN errors_today WHEN window_start > :ws THEN errors_today ELSE 0 END,
 cost_today_nanousd = CASE WHEN window_start = :ws THEN cost_today_nanousd + :cost
   WHEN window_start > :ws THEN cost_today_nanousd ELSE :cost END,
 window_start = CASE WHEN window_start > :ws THEN window_start ELSE :ws END,
 total_tokens = total_tokens + :total, total_input = total_input + :inp, total_cached = total_cached + :cached,
 total_output = total_output + :out, total_calls = total_calls + 1, total_cost_nanousd = total_cost_nanousd + :cost,
 last_used_at = :at WHERE id = :key"""
RAW_EVENT = """INSERT INTO usage_event (call_id, at, key_id, window_start, bot, operation, model, input_tokens,
 cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, duration_ms, outcome, error_code,
 chat_id, estimated) VALUES (:call_id, :at, :key, :ws, :bot, :op, :model, :inp, :cached, :out, 0, :total, :cost,
 :ms, 'ok', '', :chat, 0)"""
RAW_ROLLUP = """INSERT INTO daily_rollup (day, key_id, bot, model, operation, calls, ok_calls, error_calls, rate_hits,
 input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, duration_ms)
 VALUES (:day, :key, :bot, :model, :op, 1, 1, 0, 0, :inp, :cached, :out, 0, :total, :cost, :ms)
 ON CONFLICT (day, key_id, bot, model, operation) DO UPDATE SET calls = calls + 1, ok_calls = ok_calls + 1,
 input_tokens = input_tokens + excluded.input_tokens, cached_tokens = cached_tokens + excluded.cached_tokens,
 output_tokens = output_tokens + excluded.output_tokens, total_tokens = total_tokens + excluded.total_tokens,
 cost_nanousd = cost_nanousd + excluded.cost_nanousd, duration_ms = duration_ms + excluded.duration_ms"""

RAW_CHAT_ROLLUP = """INSERT INTO chat_rollup (day, key_id, bot, chat_id, calls, ok_calls, error_calls, rate_hits,
 input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, duration_ms)
 VALUES (:day, :key, :bot, :chat, 1, 1, 0, 0, :inp, :cached, :out, 0, :total, :cost, :ms)
 ON CONFLICT (day, key_id, bot, chat_id) DO UPDATE SET calls = calls + 1, ok_calls = ok_calls + 1,
 input_tokens = input_tokens + excluded.input_tokens, cached_tokens = cached_tokens + excluded.cached_tokens,
 output_tokens = output_tokens + excluded.output_tokens, total_tokens = total_tokens + excluded.total_tokens,
 cost_nanousd = cost_nanousd + excluded.cost_nanousd, duration_ms = duration_ms + excluded.duration_ms"""


def prepare(path: str) -> None:
    config = parse_config({"database": {"url": f"sqlite:///{path}"},
                           "keys": [{"api_key": f"sk-bench-{i:04d}-{'x' * 20}"} for i in range(KEYS)]}, env={})
    db = connect_database(config.database_url)
    ensure_schema(db)
    sync_keys(config)
    db.close()


def _random_call(rng):
    inp = rng.randint(50, 3000)
    return dict(inp=inp, cached=rng.randint(0, inp), out=rng.randint(10, 800), model=rng.choice(MODELS),
                op=rng.choice(OPS), ms=rng.randint(100, 2000), chat=rng.randint(1, 50))


def tracked_worker(path, calls, seed, queue):
    db = connect_database(f"sqlite:///{path}")
    anchors = {k.id: k.window_anchor for k in ApiKey.select()}
    pricer = Pricer()
    rng = random.Random(seed)
    latencies = []
    began = time.time()
    for _ in range(calls):
        c = _random_call(rng)
        key = rng.choice(list(anchors))
        t = time.perf_counter()
        record_call(CallRecord(key_id=key, bot=f"bot{seed}", operation=c["op"], model=c["model"],
                               input_tokens=c["inp"], cached_tokens=c["cached"], output_tokens=c["out"],
                               duration_ms=c["ms"], chat_id=c["chat"]), anchor=anchors[key], pricer=pricer)
        latencies.append(time.perf_counter() - t)
    queue.put((began, time.time(), latencies))
    db.close()


def raw_worker(path, calls, seed, queue):
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=normal")
    conn.execute("PRAGMA busy_timeout=10000")
    anchors = {row[0]: dt.datetime.fromisoformat(row[1])
               for row in conn.execute("SELECT id, window_anchor FROM api_key")}
    pricer = Pricer()  # the raw loop prices calls too, so both do the same work
    rng = random.Random(seed)
    latencies = []
    began = time.time()
    for _ in range(calls):
        c = _random_call(rng)
        key = rng.choice(list(anchors))
        t = time.perf_counter()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cost = pricer.cost_nanousd(c["model"], c["inp"], c["cached"], c["out"])
        params = dict(c, key=key, total=c["inp"] + c["out"], cost=cost, at=str(now), day=str(now.date()),
                      ws=str(window_start(anchors[key], now)), call_id=uuid.uuid4().hex, bot=f"bot{seed}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(RAW_UPDATE, params)
        conn.execute(RAW_EVENT, params)
        conn.execute(RAW_ROLLUP, params)
        conn.execute(RAW_CHAT_ROLLUP, params)
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - t)
    queue.put((began, time.time(), latencies))
    conn.close()


def run(kind, processes, calls):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        prepare(path)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        target = tracked_worker if kind == "tracked" else raw_worker
        procs = [ctx.Process(target=target, args=(path, calls, seed, queue)) for seed in range(processes)]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
    # Throughput from the first call of any process to the last (process start-up excluded).
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    latencies = [x for r in results for x in r[2]]
    latencies.sort()
    return {"rate": processes * calls / elapsed, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def async_hop(calls: int) -> tuple[float, float]:
    """p50 ms of Accountant.record (blocking) and of `await Accountant.arecord` (the bot's
    way: the same work on the accounting thread, so the event loop never blocks)."""
    import asyncio

    from shared.core.accounting import Accountant
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        prepare(path)
        db = connect_database(f"sqlite:///{path}")
        key = ApiKey.select().first().id
        accountant = Accountant("bench")

        def call():
            return CallRecord(key_id=key, bot="bench", operation="autoreply", model="gpt-4o-mini",
                              input_tokens=500, output_tokens=100, chat_id=1)

        blocking = []
        for _ in range(calls):
            t = time.perf_counter()
            accountant.record(call())
            blocking.append(time.perf_counter() - t)

        async def run():
            hops = []
            for _ in range(calls):
                t = time.perf_counter()
                await accountant.arecord(call())
                hops.append(time.perf_counter() - t)
            return hops

        threaded = asyncio.run(run())
        accountant.close()
        db.close()
    return statistics.median(blocking) * 1000, statistics.median(threaded) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per process (default 3000)")
    args = parser.parse_args()
    print(f"record_call on SQLite (WAL, synchronous=NORMAL), {args.calls} calls per process, {os.cpu_count()} cores")
    print(f"{'processes':>9} {'tracked calls/s':>16} {'raw calls/s':>12} {'ratio':>6} "
          f"{'tracked p50 ms':>15} {'p99 ms':>7} {'raw p50 ms':>11}")
    for processes in (1, 4):
        raw = run("raw", processes, args.calls)
        tracked = run("tracked", processes, args.calls)
        print(f"{processes:>9} {tracked['rate']:>16,.0f} {raw['rate']:>12,.0f} {tracked['rate'] / raw['rate']:>6.0%} "
              f"{tracked['p50']:>15.3f} {tracked['p99']:>7.3f} {raw['p50']:>11.3f}")
    blocking, threaded = async_hop(min(args.calls, 2000))
    print(f"from asyncio: record() p50 {blocking:.3f} ms, await arecord() p50 {threaded:.3f} ms "
          f"(thread hop {threaded - blocking:+.3f} ms; the event loop is free meanwhile)")


if __name__ == "__main__":
    main()
