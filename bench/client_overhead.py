"""What tracking costs per call: the tracked client vs a bare `openai` call, side by side,
against the offline simulator (run as `tokenpool sim` in its own process, so it does not
share our GIL). Calls alternate bare/tracked so both see the same machine state.

The tracked call does everything it does in the bot: write the call down before it is
sent (the in-flight file), pick the key (worker ranking + heartbeat + the key rows,
re-checked), send with `with_raw_response`, parse usage and rate-limit headers, record the
event/counters/rollup in one transaction, log the console line (to /dev/null here).

Run:  .venv/bin/python bench/client_overhead.py [--calls 500] [--database-url URL] [--profile FILE]
Targets: p50 overhead <= 0.6 ms; the process's first call (after `warm_up`, which the bot runs
at start) within 2x of the steady overhead.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import openai  # noqa: E402

from shared.ai.client import TrackedClient  # noqa: E402
from shared.core.accounting import Accountant  # noqa: E402
from shared.core.config import parse_config  # noqa: E402
from shared.core.db import database  # noqa: E402
from shared.core.inflight import InFlight  # noqa: E402
from shared.core.journal import CallJournal, journal_path  # noqa: E402
from shared.core.liveness import beat  # noqa: E402
from shared.core.models import KeyRanking, UsageEvent  # noqa: E402
from shared.core.pricing import Pricer  # noqa: E402
from shared.core.startup import open_runtime  # noqa: E402

SECRET = "sk-bench-" + "c" * 32
MESSAGES = [{"role": "system", "content": "You reply briefly."}, {"role": "user", "content": "How are you?"}]


def start_simulator(tmp: str) -> tuple[subprocess.Popen, str]:
    empty_config = os.path.join(tmp, "sim.toml")
    open(empty_config, "w").close()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.tools.cli", "--config", empty_config, "sim", "--port", "0",
         "--json", "--rpm", "100000000", "--tpm", "1000000000000", "--allowance", "1000000000000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    line = process.stdout.readline()
    if not line:
        raise SystemExit("the simulator did not start (run `tokenpool sim --port 0` to see why)")
    return process, json.loads(line)["base_url"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base_url: str, database_url: str, calls: int, warmup: int, profile: str = "") -> dict:
    config = parse_config({"database": {"url": database_url}, "bot": {"name": "bench"},
                           "keys": [{"label": "bench", "api_key": SECRET, "base_url": base_url,
                                     "daily_token_limit": 10 ** 12}]}, "bench.toml", env={})
    runtime = open_runtime(config)
    key_id = runtime.keyring.ids()[0]
    # A live worker with a published ranking: the full selection path (3 reads) runs.
    beat("worker", "bench-worker")
    KeyRanking.create(generation=int(time.time()), key_ids=json.dumps([key_id]), policy="sticky",
                      published_by="bench-worker")
    # As the bot has it: each call written down before it is sent (InFlight), a journal
    # for calls the database cannot take.
    data_dir = os.path.dirname(database_url.split(":///", 1)[-1]) if database_url.startswith("sqlite") else ""
    data_dir = data_dir or tempfile.mkdtemp(prefix="tokenpool-bench-")
    accountant = Accountant(config.bot.name, Pricer(config.pricing),
                            journal=CallJournal(journal_path(data_dir, config.bot.name)),
                            inflight=InFlight(data_dir, config.bot.name))
    tracked = TrackedClient(config, runtime.keyring, accountant)
    warm_started = time.perf_counter()
    await tracked.warm_up()                     # what the bot does at start
    warm_up = time.perf_counter() - warm_started
    first_started = time.perf_counter()         # the process's first call: nothing sent before it
    await tracked.chat(MESSAGES, operation="bench")
    first = time.perf_counter() - first_started
    bare = openai.AsyncOpenAI(api_key=SECRET, base_url=base_url, max_retries=0)

    bare_cpu, tracked_cpu = [], []

    async def bare_call() -> float:
        started, cpu = time.perf_counter(), time.process_time()
        await bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        bare_cpu.append(time.process_time() - cpu)
        return time.perf_counter() - started

    async def tracked_call() -> float:
        started, cpu = time.perf_counter(), time.process_time()
        await tracked.chat(MESSAGES, operation="bench")
        tracked_cpu.append(time.process_time() - cpu)
        return time.perf_counter() - started

    for _ in range(warmup):
        await bare_call()
        await tracked_call()
    del bare_cpu[:], tracked_cpu[:]
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    bare_times, tracked_times, paired = [], [], []
    for i in range(calls):
        if i % 2:
            b, t = await bare_call(), await tracked_call()
        else:
            t, b = await tracked_call(), await bare_call()
        bare_times.append(b)
        tracked_times.append(t)
        paired.append(t - b)
        if i % 50 == 0:   # the worker keeps beating; selection must keep seeing it alive
            await accountant.run(beat, "worker", "bench-worker")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    events = await accountant.run(lambda: UsageEvent.select().where(UsageEvent.operation == "bench").count())
    await tracked.aclose()
    await bare.close()
    await accountant.run(database.close)
    accountant.inflight.close()
    accountant.close()
    runtime.db.close()
    return {"bare": bare_times, "tracked": tracked_times, "paired": paired, "events": events, "first": first,
            "warm_up": warm_up, "bare_cpu": bare_cpu, "tracked_cpu": tracked_cpu}


def report(label: str, result: dict, calls: int, warmup: int) -> None:
    ms = 1000.0
    bare, tracked = result["bare"], result["tracked"]
    bare_p50, tracked_p50 = statistics.median(bare) * ms, statistics.median(tracked) * ms
    print(f"{label}: {calls} calls each, alternating (after {warmup} warm-up pairs); "
          f"{result['events']} events recorded")
    print(f"  bare openai call      p50 {bare_p50:7.3f} ms   p90 {percentile(bare, 0.9) * ms:7.3f} ms")
    print(f"  tracked client call   p50 {tracked_p50:7.3f} ms   p90 {percentile(tracked, 0.9) * ms:7.3f} ms")
    print(f"  ratio of medians      {tracked_p50 / bare_p50:.2f}x")
    paired = statistics.median(result["paired"]) * ms
    print(f"  p50 overhead          {tracked_p50 - bare_p50:.3f} ms (difference of medians); "
          f"{paired:.3f} ms (median of paired differences)")
    # CPU time of this process per call (every thread: the database thread's share of a
    # tracked call included): what tracking costs in work, whatever the machine's load does
    # to wall-clock time. The simulator's CPU is in its own process and not counted.
    bare_cpu, tracked_cpu = statistics.median(result["bare_cpu"]) * ms, statistics.median(result["tracked_cpu"]) * ms
    mean_bare, mean_tracked = statistics.fmean(result["bare_cpu"]) * ms, statistics.fmean(result["tracked_cpu"]) * ms
    print(f"  CPU per call (process_time, this process)  bare p50 {bare_cpu:.3f} ms, tracked p50 {tracked_cpu:.3f} ms: "
          f"overhead {tracked_cpu - bare_cpu:.3f} ms p50, {mean_tracked - mean_bare:.3f} ms mean")
    first_overhead = result["first"] * ms - bare_p50
    print(f"  first call            {result['first'] * ms:.3f} ms, overhead {first_overhead:.3f} ms over the bare p50 "
          f"= {first_overhead / paired if paired > 0 else float('nan'):.1f}x the steady overhead "
          f"(after warm_up at start: {result['warm_up'] * ms:.0f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--profile", metavar="FILE", default="",
                        help="write a cProfile of the measured calls (bare and tracked) to FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    calls_log = logging.getLogger("tokenpool.calls")
    calls_log.setLevel(logging.INFO)                       # the console line is part of the cost...
    calls_log.addHandler(logging.FileHandler(os.devnull))  # ...but written to /dev/null
    calls_log.propagate = False
    logging.getLogger("tokenpool.selection").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_simulator(tmp)
        try:
            url = args.database_url or f"sqlite:///{tmp}/bench.db"
            result = asyncio.run(measure(base_url, url, args.calls, args.warmup, args.profile))
            report(url.split(":", 1)[0], result, args.calls, args.warmup)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
