"""What tracking costs per call: the tracked client vs a bare `openai` call, side by side,
against the offline simulator (run as `tokenpool sim` in its own process, so it does not
share our GIL). Calls alternate bare/tracked so both see the same machine state.

The tracked call does everything it does in the bot: write the call down before it is
sent (the in-flight file), pick the key (worker ranking + heartbeat + the key rows,
re-checked), send with `with_raw_response`, parse usage and rate-limit headers, record the
event/counters/rollup in one transaction, log the console line (to /dev/null here).

Run:  .venv/bin/python bench/client_overhead.py [--runs 7] [--calls 500] [--database-url URL] [--profile FILE]
      [--profile-first FILE] [--allowances] [--budgets]
Each run is its own process (a process has one first call); the figures of every run and
their medians are printed.
With --allowances the key draws on a provider allowance (an organization's daily tokens for
its mini models, as in config.example.toml), so every call holds and settles against it;
with --budgets the pool's daily and monthly cost budgets are enforced (held the same way).
Targets: p50 overhead <= 0.6 ms; the process's first call (after `warm_up`, which the bot runs
at start) within 2x of the steady overhead. The first call opens a new connection, as does any
call after the pool's keep-alive (5 s) has lapsed; its baseline is therefore the first call of
new bare clients (each its own connection), measured after the steady calls. A call after a
pause costs more than one right after others (caches gone cold): a bare first call after a 1 s
pause took ~1 ms more wall-clock time and ~0.7 ms more CPU here; both first calls here follow
work of their kind (the tracked one the start's warm-up, the bare ones the steady calls).
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
FRESH_CLIENTS = 5          # new bare clients whose first call is the baseline of the tracked first call
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
    base_url = json.loads(line)["base_url"]
    warm_simulator(base_url)
    return process, base_url


def warm_simulator(base_url: str) -> None:
    """The simulator's own first requests (its code loaded, its caches built) are answered
    before anything is measured, from another process, so the measuring one stays cold. (Done
    again just before each run's first call, it made that call slower, not faster: whatever
    runs just before a call takes the CPU's caches from it.)"""
    subprocess.run([sys.executable, "-c", SIMULATOR_WARM_UP, base_url, SECRET, json.dumps(MESSAGES)], check=True)


SIMULATOR_WARM_UP = """
import sys, urllib.request
base_url, secret, messages = sys.argv[1:]
for _ in range(5):
    request = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", method="POST",
        data=('{"model": "gpt-4o-mini", "messages": ' + messages + '}').encode(),
        headers={"Authorization": "Bearer " + secret, "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
"""


def bench_settings(base_url: str, database_url: str, allowances: bool = False, budgets: bool = False) -> dict:
    """The bench's config: one key, and what a user with a provider allowance and enforced
    budgets configures (limits far from reach: no call is refused)."""
    key: dict = {"label": "bench", "api_key": SECRET, "base_url": base_url, "daily_token_limit": 10 ** 12}
    settings: dict = {"database": {"url": database_url}, "bot": {"name": "bench"}, "keys": [key]}
    if allowances:
        key["allowances"] = ["org-mini"]
        settings["allowances"] = [{"name": "org-mini", "window": "utc-day", "tokens": 10 ** 12,
                                   "models": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini"]}]
    if budgets:
        settings["budgets"] = {"daily_cost_usd": 1000, "monthly_cost_usd": 20000, "enforce": True}
    return settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_profiles(accountant: Accountant) -> tuple:
    """cProfiles (CPU time of each thread) of the event loop's thread and the database thread."""
    import cProfile
    main, db = cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)
    await accountant.executor.run_once(db.enable)
    main.enable()
    return main, db


async def stop_profiles(accountant: Accountant, profiles: tuple, path: str) -> None:
    main, db = profiles
    main.disable()
    await accountant.executor.run_once(db.disable)
    main.dump_stats(path)
    db.dump_stats(path + ".db")


async def measure(base_url: str, database_url: str, calls: int, warmup: int, profile: str = "",
                  profile_first: str = "", allowances: bool = False, budgets: bool = False) -> dict:
    config = parse_config(bench_settings(base_url, database_url, allowances, budgets), "bench.toml", env={})
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
    await tracked.warm_up()                     # what the bot does at start (userbot.app.run_bots):
    await accountant.settle_journal()           # warm up, then book what an earlier run left
    warm_up = time.perf_counter() - warm_started
    first_profiles = await start_profiles(accountant) if profile_first else None
    first_started, first_cpu = time.perf_counter(), time.process_time()   # the process's first call:
    await tracked.chat(MESSAGES, operation="bench")                       # nothing sent before it
    first, first_cpu = time.perf_counter() - first_started, time.process_time() - first_cpu
    if first_profiles is not None:
        await stop_profiles(accountant, first_profiles, profile_first)
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
    fresh = [await fresh_bare_first_call(base_url, bare) for _ in range(FRESH_CLIENTS)]
    events = await accountant.run(lambda: UsageEvent.select().where(UsageEvent.operation == "bench").count())
    await tracked.aclose()
    await bare.close()
    await accountant.run(database.close)
    accountant.inflight.close()
    accountant.close()
    runtime.db.close()
    return {"bare": bare_times, "tracked": tracked_times, "paired": paired, "events": events, "first": first,
            "warm_up": warm_up, "bare_cpu": bare_cpu, "tracked_cpu": tracked_cpu, "first_cpu": first_cpu,
            "fresh": [wall for wall, _ in fresh], "fresh_cpu": [cpu for _, cpu in fresh]}


def fresh_bare_client(base_url: str, warm: openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    """A new bare client, made ready as the tracked client's are at start: its own new
    connection pool, so its first call connects as the tracked client's first call does;
    its chat resources built (the tracked client's `prepare` and warm-up build them); and
    the platform for its headers, which openai finds on a thread at a client's first request
    (the tracked client's warm-up did that at start), taken from the warm bare client (when
    this openai has the field)."""
    client = openai.AsyncOpenAI(api_key=SECRET, base_url=base_url, max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient())
    client.chat.completions.with_raw_response  # noqa: B018  (cached properties)
    if getattr(client, "_platform", "") is None:
        client._platform = getattr(warm, "_platform", None)
    return client


async def fresh_bare_first_call(base_url: str, warm: openai.AsyncOpenAI) -> tuple[float, float]:
    """(wall, CPU) seconds of a new bare client's first call (`fresh_bare_client`)."""
    client = fresh_bare_client(base_url, warm)
    started, cpu = time.perf_counter(), time.process_time()
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    result = time.perf_counter() - started, time.process_time() - cpu
    await client.close()
    return result


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
          f"= {ratio(first_overhead, paired)} the steady overhead "
          f"(after warm_up at start: {result['warm_up'] * ms:.0f} ms)")
    # Both first calls open a connection of their own; the steady calls above reuse theirs.
    fresh, fresh_cpu = statistics.median(result["fresh"]) * ms, statistics.median(result["fresh_cpu"]) * ms
    first, first_cpu = result["first"] * ms, result["first_cpu"] * ms
    print(f"  first calls, each on a new connection: tracked {first:.3f} ms (CPU {first_cpu:.3f} ms), "
          f"bare {fresh:.3f} ms (CPU {fresh_cpu:.3f} ms; a new AsyncOpenAI client, median of {len(result['fresh'])})")
    print(f"  first-call overhead   {first - fresh:.3f} ms (first tracked - first bare) = "
          f"{ratio(first - fresh, paired)} the steady overhead; CPU {first_cpu - fresh_cpu:.3f} ms = "
          f"{ratio(first_cpu - fresh_cpu, tracked_cpu - bare_cpu)} the steady CPU overhead")


def ratio(overhead: float, steady: float) -> str:
    return f"{overhead / steady:.1f}x" if steady > 0 else "n/a (no steady overhead)"


def summarize(result: dict) -> dict:
    """One run's figures in ms: the steady overheads (wall-clock: median of the paired
    differences; CPU: difference of medians) and the first call's, over new bare clients'."""
    ms = 1000.0
    fresh, fresh_cpu = statistics.median(result["fresh"]) * ms, statistics.median(result["fresh_cpu"]) * ms
    return {"steady": statistics.median(result["paired"]) * ms,
            "steady_cpu": (statistics.median(result["tracked_cpu"]) - statistics.median(result["bare_cpu"])) * ms,
            "first": result["first"] * ms - fresh, "first_cpu": result["first_cpu"] * ms - fresh_cpu}


def report_runs(label: str, results: list[dict]) -> None:
    """Several runs, each its own process (a first call happens once a process): each run's
    figures, then their medians."""
    runs = [summarize(result) for result in results]
    print(f"{label}: {len(runs)} runs, each its own process")
    print("  run   steady overhead  (CPU)       first-call overhead  (CPU)        first / steady")
    for i, run in enumerate(runs, 1):
        print(f"  {i:>3}   {run['steady']:7.3f} ms  ({run['steady_cpu']:6.3f} ms)   {run['first']:7.3f} ms  "
              f"({run['first_cpu']:7.3f} ms)   {ratio(run['first'], run['steady'])} "
              f"(CPU {ratio(run['first_cpu'], run['steady_cpu'])})")
    median = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    within = sum(run["first"] <= 2 * run["steady"] for run in runs)
    print(f"  median  steady overhead p50 {median['steady']:.3f} ms (CPU {median['steady_cpu']:.3f} ms); "
          f"first-call overhead {median['first']:.3f} ms (CPU {median['first_cpu']:.3f} ms) = "
          f"{ratio(median['first'], median['steady'])} the steady overhead "
          f"(CPU {ratio(median['first_cpu'], median['steady_cpu'])}); {within} of {len(runs)} runs within 2x")


def run_in_child(args: argparse.Namespace, base_url: str, database_url: str, profiles: bool) -> dict:
    """One measuring run in a new process of this script (its first call is a process's first)."""
    command = [sys.executable, os.path.abspath(__file__), "--simulator", base_url, "--database-url", database_url,
               "--calls", str(args.calls), "--warmup", str(args.warmup)]
    command += ["--allowances"] * args.allowances + ["--budgets"] * args.budgets
    if profiles:
        command += [f"--profile={args.profile}", f"--profile-first={args.profile_first}"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING)
    calls_log = logging.getLogger("tokenpool.calls")
    calls_log.setLevel(logging.INFO)                       # the console line is part of the cost...
    calls_log.addHandler(logging.FileHandler(os.devnull))  # ...but written to /dev/null
    calls_log.propagate = False
    logging.getLogger("tokenpool.selection").setLevel(logging.ERROR)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7,
                        help="measuring runs, each its own process (default 7); medians over runs are printed")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir for each run")
    parser.add_argument("--profile", metavar="FILE", default="",
                        help="write a cProfile of the measured calls (bare and tracked) of the first run to FILE")
    parser.add_argument("--profile-first", metavar="FILE", default="",
                        help="write a cProfile (CPU time) of the first run's first tracked call to FILE (the "
                             "event loop's thread) and FILE.db (the database thread)")
    parser.add_argument("--allowances", action="store_true",
                        help="the key draws on a provider allowance (held and settled at every call)")
    parser.add_argument("--budgets", action="store_true", help="enforced daily and monthly cost budgets of the pool")
    parser.add_argument("--simulator", metavar="URL", help=argparse.SUPPRESS)   # a child run: measure, print JSON
    args = parser.parse_args()
    if args.simulator:
        quiet_logs()
        result = asyncio.run(measure(args.simulator, args.database_url, args.calls, args.warmup, args.profile,
                                     args.profile_first, args.allowances, args.budgets))
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_simulator(tmp)
        try:
            results = []
            for run in range(args.runs):
                url = args.database_url or f"sqlite:///{tmp}/bench-{run}.db"
                results.append(run_in_child(args, base_url, url, profiles=run == 0))
            holds = [name for name, on in (("allowance", args.allowances), ("budgets", args.budgets)) if on]
            label = url.split(":", 1)[0] + (f" with {' and '.join(holds)} held" if holds else "")
            report(label + ", run 1", results[0], args.calls, args.warmup)
            report_runs(label, results)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
