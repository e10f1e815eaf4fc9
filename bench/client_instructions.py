"""What tracking costs per call in CPU instructions (valgrind callgrind), which the load of a
shared machine does not change: the tracked client vs a bare `openai` call, against the
offline simulator in its own process (not counted).

Three client processes run under callgrind (PYTHONHASHSEED fixed), each the same set-up as
bench/client_overhead.py (key, worker ranking, warm-up, 20 calls of each kind), then: no
more calls, --calls more bare calls, or --calls more tracked calls. A call's instructions
are (that run - the run with no more calls) / --calls; every thread of the client process
counts (the database thread's share of a tracked call included).

With --first, one client process instead: its first tracked call (after warm_up), steady calls
of both kinds and new bare clients' first calls (each on its own new connection), each counted
between two marks (callgrind dumps its counts at each call of getppid).

Run:  .venv/bin/python bench/client_instructions.py [--calls 200] [--allowances] [--budgets] [--first]
      (needs valgrind; --allowances, --budgets: as in bench/client_overhead.py)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


async def client(base_url: str, database_url: str, kind: str, calls: int, holds: list[str]) -> None:
    import openai

    from bench.client_overhead import MESSAGES, SECRET
    if kind == "first":
        return await first_calls(base_url, database_url, calls, holds)
    tracked = await warmed_client(base_url, database_url, holds)
    bare = openai.AsyncOpenAI(api_key=SECRET, base_url=base_url, max_retries=0)
    for _ in range(20):
        await bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await tracked.chat(MESSAGES, operation="bench")
    for _ in range(calls if kind != "none" else 0):
        if kind == "bare":
            await bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        else:
            await tracked.chat(MESSAGES, operation="bench")
    await tracked.aclose()
    await bare.close()


FRESH_CLIENTS = 5


async def warmed_client(base_url: str, database_url: str, holds: list[str]):
    """The tracked client as the bench sets it up: one key, a live worker's ranking, warmed up."""
    from bench.client_overhead import bench_settings
    from shared.ai.client import TrackedClient
    from shared.core.accounting import Accountant
    from shared.core.config import parse_config
    from shared.core.liveness import beat
    from shared.core.models import KeyRanking
    from shared.core.pricing import Pricer
    from shared.core.startup import open_runtime

    config = parse_config(bench_settings(base_url, database_url, "allowances" in holds, "budgets" in holds),
                          "bench.toml", env={})
    runtime = open_runtime(config)
    beat("worker", "bench-worker")
    KeyRanking.create(generation=int(time.time()), key_ids=json.dumps(runtime.keyring.ids()), policy="sticky",
                      published_by="bench-worker")
    tracked = TrackedClient(config, runtime.keyring, Accountant(config.bot.name, Pricer(config.pricing)))
    await tracked.warm_up()
    return tracked


async def first_calls(base_url: str, database_url: str, calls: int, holds: list[str]) -> None:
    """The process's first tracked call, steady calls of both kinds, and new bare clients' first
    calls, each between two marks: callgrind (--dump-before=getppid) writes the instructions
    counted since the last mark at each one, so each part is counted by itself, every thread."""
    import openai

    from bench.client_overhead import MESSAGES, SECRET, fresh_bare_client

    mark = os.getppid
    tracked = await warmed_client(base_url, database_url, holds)
    mark()                                                  # 1: set-up and warm-up
    await tracked.chat(MESSAGES, operation="bench")
    mark()                                                  # 2: the first tracked call
    bare = openai.AsyncOpenAI(api_key=SECRET, base_url=base_url, max_retries=0)
    for _ in range(20):
        await bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await tracked.chat(MESSAGES, operation="bench")
    mark()                                                  # 3: warming both
    for _ in range(calls):
        await tracked.chat(MESSAGES, operation="bench")
    mark()                                                  # 4: steady tracked calls
    for _ in range(calls):
        await bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    mark()                                                  # 5: steady bare calls
    for _ in range(FRESH_CLIENTS):                          # 6, 8, ...: a new client made
        fresh = fresh_bare_client(base_url, bare)
        mark()
        await fresh.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        mark()                                              # 7, 9, ...: its first call
        await fresh.close()
    await tracked.aclose()
    await bare.close()


def first_call_instructions(calls: int, base_url: str, tmp: str, holds: list[str]) -> dict:
    out = os.path.join(tmp, "callgrind.first")
    subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
                    sys.executable, "bench/client_instructions.py", "--client", "first", base_url,
                    f"sqlite:///{tmp}/first.db", "--calls", str(calls), *(f"--{hold}" for hold in holds)],
                   cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": "0"})
    parts = [totals(f"{out}.{n}") for n in range(1, 6 + 2 * FRESH_CLIENTS)]
    return {"first": parts[1], "tracked": parts[3] / calls, "bare": parts[4] / calls,
            "fresh": sorted(parts[6::2])[len(parts[6::2]) // 2]}


def totals(path: str) -> int:
    with open(path) as data:
        for line in data:
            match = re.match(r"(?:summary|totals): (\d+)", line)
            if match:
                return int(match.group(1))
    raise RuntimeError(f"no totals in the callgrind output {path}")


def instructions(kind: str, calls: int, base_url: str, tmp: str, holds: list[str]) -> int:
    out = os.path.join(tmp, f"callgrind.{kind}")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                    "bench/client_instructions.py", "--client", kind, base_url, f"sqlite:///{tmp}/{kind}.db",
                    "--calls", str(calls), *(f"--{hold}" for hold in holds)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": "0"})
    return totals(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--allowances", action="store_true",
                        help="the key draws on a provider allowance (held and settled at every call)")
    parser.add_argument("--budgets", action="store_true", help="enforced daily and monthly cost budgets of the pool")
    parser.add_argument("--first", action="store_true",
                        help="instead: the process's first tracked call against new bare clients' first calls")
    parser.add_argument("--client", nargs=3, metavar=("KIND", "BASE_URL", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    holds = [name for name in ("allowances", "budgets") if getattr(args, name)]
    if args.client:
        kind, base_url, database_url = args.client
        asyncio.run(client(base_url, database_url, kind, args.calls, holds))
        return 0
    from bench.client_overhead import start_simulator
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_simulator(tmp)
        try:
            if args.first:
                return report_first(first_call_instructions(args.calls, base_url, tmp, holds), args.calls)
            counts = {kind: instructions(kind, args.calls, base_url, tmp, holds)
                      for kind in ("none", "bare", "tracked")}
        finally:
            process.terminate()
            process.wait(timeout=10)
    bare = (counts["bare"] - counts["none"]) / args.calls
    tracked = (counts["tracked"] - counts["none"]) / args.calls
    print(f"instructions per call (callgrind, client process, every thread), {args.calls} calls each"
          f"{' with ' + ' and '.join(holds) + ' held' if holds else ''}:")
    print(f"  bare openai call      {bare / 1e6:7.3f} M")
    print(f"  tracked client call   {tracked / 1e6:7.3f} M")
    print(f"  overhead              {(tracked - bare) / 1e6:7.3f} M instructions = {tracked / bare:.2f}x the bare call")
    return 0


def report_first(parts: dict, calls: int) -> int:
    m = 1e6
    steady = parts["tracked"] - parts["bare"]
    print(f"instructions (callgrind, client process, every thread), one process, {calls} steady calls each:")
    print(f"  first tracked call (after warm_up)     {parts['first'] / m:7.3f} M   (on its own new connection)")
    print(f"  new bare client's first call           {parts['fresh'] / m:7.3f} M   (its own new connection; "
          f"median of {FRESH_CLIENTS})")
    print(f"  steady calls: tracked {parts['tracked'] / m:.3f} M, bare {parts['bare'] / m:.3f} M, "
          f"overhead {steady / m:.3f} M")
    first = parts["first"] - parts["fresh"]
    print(f"  first-call overhead                    {first / m:7.3f} M = "
          f"{first / steady if steady > 0 else float('nan'):.1f}x the steady overhead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
