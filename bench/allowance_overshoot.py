"""Overshoot of a nearly used allowance when 8 processes race for it, per backend.

Each process runs a real TrackedClient against the offline simulator and calls until it
is refused. Three races per backend:
- key, checked: one key's own `daily_token_limit` with `reserve_key_limits = false` (the limit
  checked against the key row before sending; calls in flight all pass the check);
- key, reserved: the same key with its limit reserved like an allowance (the default);
- allowance: an allowance shared by three keys (an organization), each call's worst case
  reserved before sending.
Overshoot = tokens booked beyond the limit. The simulator counts prompt tokens as our
estimate does, so the reserved figure shows the reservation logic, not estimation error.

Run:  .venv/bin/python bench/allowance_overshoot.py [--processes 8] [--room 3000]
      (PostgreSQL / MariaDB too when TOKENPOOL_TEST_PG_URL / TOKENPOOL_TEST_MYSQL_URL are set)
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import uuid
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from playhouse import db_url as peewee_urls  # noqa: E402

from shared.ai.client import NoKeyAvailable, TrackedClient  # noqa: E402
from shared.core.accounting import Accountant  # noqa: E402
from shared.core.allowances import allowance_usage  # noqa: E402
from shared.core.config import parse_config  # noqa: E402
from shared.core.db import connect_database  # noqa: E402
from shared.core.keys import sync_keys  # noqa: E402
from shared.core.models import AllowanceWindow, ApiKey, utcnow  # noqa: E402
from shared.core.schema import ensure_schema  # noqa: E402
from shared.core.status import window_usage  # noqa: E402
from shared.tools.simulator import Simulator  # noqa: E402

LIMIT = 250_000
MAX_TOKENS = 120


MODES = ("key, checked", "key, reserved", "allowance")


def config(url: str, sim_url: str, mode: str):
    reserved = mode == "allowance"
    keys = [{"label": f"k{i}", "api_key": f"sk-bench-{i:02d}-" + "x" * 24, "base_url": sim_url,
             "daily_token_limit": 10 * LIMIT if reserved else LIMIT,
             **({"allowances": ["org"]} if reserved else {})} for i in range(1, (3 if reserved else 1) + 1)]
    raw = {"database": {"url": url}, "keys": keys,
           "client": {"max_attempts": 3, "reserve_key_limits": mode != "key, checked"}}
    if reserved:
        raw["allowances"] = [{"name": "org", "tokens": LIMIT, "models": ["gpt-4o"]}]
    return parse_config(raw, "bench.toml", env={})


def used(mode: str) -> int:
    if mode == "allowance":
        return allowance_usage(utcnow(), ["org"])[0].tokens_used
    return window_usage(ApiKey.get(), utcnow()).used


def prepare(url: str, sim_url: str, mode: str, room: int) -> None:
    connect_database(url)
    ensure_schema(connect_database(url))
    sync_keys(config(url, sim_url, mode))
    now = utcnow()
    if mode == "allowance":
        (usage,) = allowance_usage(now, ["org"])
        AllowanceWindow.insert(allowance=usage.ref.id, window_start=usage.window_start,
                               tokens_used=LIMIT - room).execute()
    else:
        key = ApiKey.get()
        ApiKey.update(used_today=LIMIT - room, window_start=window_usage(key, now).window_start).execute()


def racer(url: str, sim_url: str, mode: str, start, index: int, results) -> None:
    connect_database(url)
    cfg = config(url, sim_url, mode)
    ring = sync_keys(cfg)

    async def run() -> int:
        accountant = Accountant(f"racer{index}")
        client = TrackedClient(cfg, ring, accountant)
        served = 0
        start.wait()
        try:
            while True:
                try:
                    await client.chat([{"role": "user", "content": f"racer {index} call {served}"}],
                                      operation="race", model="gpt-4o", max_tokens=MAX_TOKENS)
                except NoKeyAvailable:
                    return served
                served += 1
        finally:
            await client.aclose()
            accountant.close()

    results.put(asyncio.run(run()))


def race(url: str, sim_url: str, mode: str, processes: int, room: int) -> tuple[int, int]:
    prepare(url, sim_url, mode, room)
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=racer, args=(url, sim_url, mode, start, i, results))
               for i in range(processes)]
    for w in workers:
        w.start()
    served = sum(results.get() for _ in workers)
    for w in workers:
        w.join()
    connect_database(url)
    return max(0, used(mode) - LIMIT), served


def fresh(backend: str, base: str, tmp: str):
    """A URL to an empty database of `backend`, and a function that drops it."""
    if backend == "sqlite":
        path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
        return f"sqlite:///{path}", lambda: None
    name = "bench_" + uuid.uuid4().hex[:10]
    admin = peewee_urls.connect(base)
    if backend == "postgres":
        admin.execute_sql(f"CREATE SCHEMA {name}")
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options=-csearch_path%3D{name}"
        return url, lambda: admin.execute_sql(f"DROP SCHEMA {name} CASCADE")
    admin.execute_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return urlunparse(urlparse(base)._replace(path="/" + name)), lambda: admin.execute_sql(f"DROP DATABASE {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--room", type=int, default=3_000, help="tokens left in the allowance at the start")
    parser.add_argument("--latency-ms", type=int, default=50, help="the simulator's answer delay")
    args = parser.parse_args()
    sim = Simulator(accept_unknown_keys=True, latency=args.latency_ms / 1000)
    sim_url = sim.start_in_thread()
    backends = [("sqlite", "")] + [(name, os.environ[env]) for name, env in
                                   (("postgres", "TOKENPOOL_TEST_PG_URL"), ("mysql", "TOKENPOOL_TEST_MYSQL_URL"))
                                   if os.environ.get(env)]
    print(f"{args.processes} processes racing for the last {args.room:,} tokens of a {LIMIT:,}-token limit "
          f"(calls of up to {MAX_TOKENS} output tokens, {args.latency_ms} ms each); overshoot in tokens (calls)")
    print(f"{'backend':<10}" + "".join(f"{mode:>22}" for mode in MODES))
    with tempfile.TemporaryDirectory() as tmp:
        for backend, base in backends:
            cells = []
            for mode in MODES:
                url, drop = fresh(backend, base, tmp)
                try:
                    over, calls = race(url, sim_url, mode, args.processes, args.room)
                finally:
                    drop()
                cells.append(f"{over:,} ({calls})")
            print(f"{backend:<10}" + "".join(f"{cell:>22}" for cell in cells), flush=True)
    sim.stop()


if __name__ == "__main__":
    main()
