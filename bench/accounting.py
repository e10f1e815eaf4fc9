"""record_call against the same SQL run by the bare driver, on SQLite and PostgreSQL.

The raw baseline is a loop over the bare driver (`sqlite3`, `psycopg2`) running the same
four statements per transaction that `record_call` runs: the key's counters UPDATE, the
event INSERT, the daily rollup upsert and the chat rollup upsert. It does no pricing (a
price is the product's work, not the baseline's). Raw and tracked runs alternate round by
round, so both see the same machine; figures are medians over the rounds. After every
run the books are checked: the key counters, the rollups and the events must agree
exactly with the calls made (a lost update shows as a difference).

Run:  .venv/bin/python bench/accounting.py [--calls N] [--rounds R] [--pg-url URL | --no-pg]
PostgreSQL: --pg-url, else $TOKENPOOL_BENCH_PG_URL, else $TOKENPOOL_TEST_PG_URL (a fresh
schema is made and dropped per run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.core.windows import window_start  # noqa: E402

KEYS = 10
MODELS = ["gpt-4o-mini", "gpt-4o"]
OPS = ["autoreply", "summary"]


def _today(column: str, amount: str) -> str:
    return (f"{column} = CASE WHEN window_start = :ws THEN {column} + {amount} "
            f"WHEN window_start > :ws THEN {column} ELSE {amount} END")


RAW_UPDATE = ("UPDATE api_key SET "
              + ", ".join(_today(c, a) for c, a in (
                  ("used_today", ":total"), ("input_today", ":inp"), ("cached_today", ":cached"),
                  ("output_today", ":out"), ("calls_today", "1"), ("rate_hits_today", "0"),
                  ("errors_today", "0"), ("cost_today_nanousd", ":cost"), ("unpriced_today", ":unpriced")))
              + ", window_start = CASE WHEN window_start > :ws THEN window_start ELSE :ws END,"
              " total_tokens = total_tokens + :total, total_input = total_input + :inp,"
              " total_cached = total_cached + :cached, total_output = total_output + :out,"
              " total_calls = total_calls + 1, total_rate_hits = total_rate_hits + 0,"
              " total_errors = total_errors + 0, total_cost_nanousd = total_cost_nanousd + :cost,"
              " total_unpriced = total_unpriced + :unpriced,"
              " last_used_at = :at WHERE id = :key")
RAW_EVENT = """INSERT INTO usage_event (call_id, at, key_id, window_start, bot, operation, model, input_tokens,
 cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, duration_ms, outcome, error_code,
 chat_id, estimated, unpriced_tokens) VALUES (:call_id, :at, :key, :ws, :bot, :op, :model, :inp, :cached, :out, 0,
 :total, :cost, :ms, 'ok', '', :chat, :estimated, :unpriced)"""
_SUMS = """calls = {t}.calls + 1, ok_calls = {t}.ok_calls + 1, error_calls = {t}.error_calls + 0,
 rate_hits = {t}.rate_hits + 0, input_tokens = {t}.input_tokens + excluded.input_tokens,
 cached_tokens = {t}.cached_tokens + excluded.cached_tokens, output_tokens = {t}.output_tokens + excluded.output_tokens,
 reasoning_tokens = {t}.reasoning_tokens + 0, total_tokens = {t}.total_tokens + excluded.total_tokens,
 cost_nanousd = {t}.cost_nanousd + excluded.cost_nanousd,
 unpriced_tokens = {t}.unpriced_tokens + excluded.unpriced_tokens,
 duration_ms = {t}.duration_ms + excluded.duration_ms"""
RAW_ROLLUP = """INSERT INTO daily_rollup (day, key_id, bot, model, operation, calls, ok_calls, error_calls, rate_hits,
 input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, unpriced_tokens, duration_ms)
 VALUES (:day, :key, :bot, :model, :op, 1, 1, 0, 0, :inp, :cached, :out, 0, :total, :cost, :unpriced, :ms)
 ON CONFLICT (day, key_id, bot, model, operation) DO UPDATE SET """ + _SUMS.format(t="daily_rollup")
RAW_CHAT_ROLLUP = """INSERT INTO chat_rollup (day, key_id, bot, chat_id, calls, ok_calls, error_calls, rate_hits,
 input_tokens, cached_tokens, output_tokens, reasoning_tokens, total_tokens, cost_nanousd, unpriced_tokens, duration_ms)
 VALUES (:day, :key, :bot, :chat, 1, 1, 0, 0, :inp, :cached, :out, 0, :total, :cost, :unpriced, :ms)
 ON CONFLICT (day, key_id, bot, chat_id) DO UPDATE SET """ + _SUMS.format(t="chat_rollup")
RAW_STATEMENTS = (RAW_UPDATE, RAW_EVENT, RAW_ROLLUP, RAW_CHAT_ROLLUP)


def _pyformat(sql: str) -> str:
    """:name placeholders (sqlite3) as %(name)s (psycopg2)."""
    return re.sub(r":([a-z_]+)", r"%(\1)s", sql)


# --- databases ---------------------------------------------------------------------------------

@contextmanager
def fresh_database(backend: str, pg_url: str | None):
    """A migrated database with KEYS synced keys: yields its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            _prepare(url)
            yield url
        return
    import psycopg2
    name = "bench_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {name}")
    parts = urlparse(pg_url)
    query = f"{parts.query}&" if parts.query else ""
    url = urlunparse(parts._replace(query=query + f"options=-csearch_path%3D{name}"))
    try:
        _prepare(url)
        yield url
    finally:
        admin.cursor().execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()


def _prepare(url: str) -> None:
    from shared.core.config import parse_config
    from shared.core.db import connect_database
    from shared.core.keys import sync_keys
    from shared.core.schema import ensure_schema
    config = parse_config({"database": {"url": url},
                           "keys": [{"api_key": f"sk-bench-{i:04d}-{'x' * 20}"} for i in range(KEYS)]}, env={})
    db = connect_database(config.database_url)
    ensure_schema(db)
    sync_keys(config)
    db.close()


def _raw_connection(url: str):
    """The bare driver's connection and its paramstyle."""
    if url.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None, timeout=10)
        for pragma in ("journal_mode=wal", "synchronous=normal", "busy_timeout=10000", "foreign_keys=1"):
            conn.execute(f"PRAGMA {pragma}")
        return conn, "sqlite"
    import psycopg2
    return psycopg2.connect(url), "postgres"


def books(url: str) -> dict:
    """Sums that must agree exactly: calls and tokens by keys, events and both rollups."""
    conn, _kind = _raw_connection(url)
    cur = conn.cursor()
    figures = {}
    for name, sql in (("keys", "SELECT SUM(total_calls), SUM(total_tokens), SUM(total_cost_nanousd) FROM api_key"),
                      ("events", "SELECT COUNT(*), SUM(total_tokens), SUM(cost_nanousd) FROM usage_event"),
                      ("daily", "SELECT SUM(calls), SUM(total_tokens), SUM(cost_nanousd) FROM daily_rollup"),
                      ("chat", "SELECT SUM(calls), SUM(total_tokens), SUM(cost_nanousd) FROM chat_rollup")):
        cur.execute(sql)
        figures[name] = tuple(int(v or 0) for v in cur.fetchone())
    conn.close()
    return figures


# --- the two loops -------------------------------------------------------------------------------

def _random_call(rng):
    inp = rng.randint(50, 3000)
    return dict(inp=inp, cached=rng.randint(0, inp), out=rng.randint(10, 800), model=rng.choice(MODELS),
                op=rng.choice(OPS), ms=rng.randint(100, 2000), chat=rng.randint(1, 50))


def tracked_worker(url, calls, seed, barrier, queue):
    from shared.core.accounting import CallRecord, prepare_statements, record_call
    from shared.core.db import connect_database
    from shared.core.models import ApiKey
    from shared.core.pricing import Pricer
    db = connect_database(url)
    anchors = {k.id: k.window_anchor for k in ApiKey.select()}
    keys = list(anchors)
    pricer = Pricer()
    rng = random.Random(seed)
    planned = [(_random_call(rng), rng.choice(keys)) for _ in range(calls)]
    # What the bot does at start (TrackedClient.warm_up): statements compiled, prices looked up.
    prepare_statements(db)
    for model in MODELS:
        pricer.cost_nanousd(model, 1, 0, 1)
    latencies = []
    barrier.wait()
    began = time.time()
    for c, key in planned:
        t = time.perf_counter()
        record_call(CallRecord(key_id=key, bot=f"bot{seed}", operation=c["op"], model=c["model"],
                               input_tokens=c["inp"], cached_tokens=c["cached"], output_tokens=c["out"],
                               duration_ms=c["ms"], chat_id=c["chat"]), anchor=anchors[key], pricer=pricer)
        latencies.append(time.perf_counter() - t)
    queue.put((began, time.time(), latencies))
    db.close()


def raw_worker(url, calls, seed, barrier, queue):
    conn, kind = _raw_connection(url)
    cur = conn.cursor()
    statements = RAW_STATEMENTS if kind == "sqlite" else tuple(_pyformat(s) for s in RAW_STATEMENTS)
    cur.execute("SELECT id, window_anchor FROM api_key")
    anchors = {key: (a if isinstance(a, dt.datetime) else dt.datetime.fromisoformat(a)) for key, a in cur.fetchall()}
    if kind == "postgres":
        conn.commit()
    keys = list(anchors)
    rng = random.Random(seed)
    planned = [(_random_call(rng), rng.choice(keys)) for _ in range(calls)]
    as_text = str if kind == "sqlite" else (lambda v: v)
    latencies = []
    barrier.wait()
    began = time.time()
    for c, key in planned:
        t = time.perf_counter()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        params = dict(c, key=key, total=c["inp"] + c["out"], cost=0, at=as_text(now), day=as_text(now.date()),
                      ws=as_text(window_start(anchors[key], now)), call_id=uuid.uuid4().hex, bot=f"bot{seed}",
                      estimated=False, unpriced=0)
        if kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        for sql in statements:
            cur.execute(sql, params)
        conn.commit() if kind == "postgres" else cur.execute("COMMIT")
        latencies.append(time.perf_counter() - t)
    queue.put((began, time.time(), latencies))
    conn.close()


def run(kind: str, backend: str, processes: int, calls: int, pg_url: str | None) -> dict:
    with fresh_database(backend, pg_url) as url:
        ctx = mp.get_context("spawn")
        queue, barrier = ctx.Queue(), ctx.Barrier(processes)
        target = tracked_worker if kind == "tracked" else raw_worker
        procs = [ctx.Process(target=target, args=(url, calls, seed, barrier, queue)) for seed in range(processes)]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        ledger = books(url)
    # Throughput from the first call of any process to the last (start-up excluded: the
    # processes wait at a barrier until all are ready).
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    made = processes * calls
    exact = (ledger["keys"][0] == ledger["events"][0] == ledger["daily"][0] == ledger["chat"][0] == made
             and ledger["keys"][1:] == ledger["events"][1:] == ledger["daily"][1:] == ledger["chat"][1:])
    return {"rate": made / elapsed, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000, "exact": exact,
            "lost": made - min(ledger[name][0] for name in ledger)}


def compare(backend: str, processes: int, calls: int, rounds: int, pg_url: str | None) -> dict:
    """Raw and tracked, alternating for `rounds` rounds (raw first on even rounds)."""
    runs: dict[str, list[dict]] = {"raw": [], "tracked": []}
    for i in range(rounds):
        for kind in (("raw", "tracked") if i % 2 == 0 else ("tracked", "raw")):
            runs[kind].append(run(kind, backend, processes, calls, pg_url))
    med = {kind: {m: statistics.median(r[m] for r in rs) for m in ("rate", "p50", "p99")} for kind, rs in runs.items()}
    ratios = [t["rate"] / r["rate"] for t, r in zip(runs["tracked"], runs["raw"])]
    return {"raw": med["raw"], "tracked": med["tracked"], "ratio": med["tracked"]["rate"] / med["raw"]["rate"],
            "round_ratios": ratios, "exact": all(r["exact"] for rs in runs.values() for r in rs),
            "lost": sum(r["lost"] for rs in runs.values() for r in rs)}


def async_hop(calls: int) -> tuple[float, float]:
    """p50 ms of Accountant.record (blocking) and of `await Accountant.arecord` (the bot's
    way: the same work on the accounting thread, so the event loop never blocks)."""
    import asyncio

    from shared.core.accounting import Accountant, CallRecord
    from shared.core.db import connect_database
    from shared.core.models import ApiKey
    with fresh_database("sqlite", None) as url:
        db = connect_database(url)
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
    parser.add_argument("--calls", type=int, default=2000, help="calls per process per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/tracked rounds (default 3)")
    parser.add_argument("--pg-url", default=os.environ.get("TOKENPOOL_BENCH_PG_URL")
                        or os.environ.get("TOKENPOOL_TEST_PG_URL"))
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one backend only")
    args = parser.parse_args()
    print(f"record_call vs the same SQL on the bare driver: {args.calls} calls per process, "
          f"{args.rounds} alternating rounds, medians; {os.cpu_count()} cores (shared machine: figures are noisy)")
    print(f"{'backend':>8} {'procs':>5} {'tracked/s':>10} {'raw/s':>8} {'ratio':>6} {'(per round)':>17} "
          f"{'tracked p50':>11} {'p99 ms':>7} {'raw p50':>8} {'p99 ms':>7} {'books':>9}")
    plan = []
    if args.only != "postgres":
        plan += [("sqlite", 1), ("sqlite", 4)]
    if args.only != "sqlite" and not args.no_pg:
        if args.pg_url:
            plan += [("postgres", 1), ("postgres", 4), ("postgres", 8)]
        else:
            print("PostgreSQL: skipped (no --pg-url, TOKENPOOL_BENCH_PG_URL or TOKENPOOL_TEST_PG_URL)")
    for backend, processes in plan:
        r = compare(backend, processes, args.calls, args.rounds, args.pg_url)
        per_round = " ".join(f"{x:.0%}" for x in r["round_ratios"])
        books_text = "exact" if r["exact"] else f"LOST {r['lost']}"
        print(f"{backend:>8} {processes:>5} {r['tracked']['rate']:>10,.0f} {r['raw']['rate']:>8,.0f} "
              f"{r['ratio']:>6.0%} {per_round:>17} {r['tracked']['p50']:>11.3f} {r['tracked']['p99']:>7.2f} "
              f"{r['raw']['p50']:>8.3f} {r['raw']['p99']:>7.2f} {books_text:>9}", flush=True)
    if args.only != "postgres":
        blocking, threaded = async_hop(min(args.calls, 2000))
        print(f"from asyncio (SQLite): record() p50 {blocking:.3f} ms, await arecord() p50 {threaded:.3f} ms "
              f"(thread hop {threaded - blocking:+.3f} ms; the event loop is free meanwhile)")


if __name__ == "__main__":
    main()
