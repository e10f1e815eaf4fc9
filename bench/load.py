"""Load: bot processes making tracked calls against the simulator with the rotation worker,
on SQLite and PostgreSQL; then a naive JSON-file tracker against record_call as history grows.

    .venv/bin/python bench/load.py [--calls 500] [--bots 8] [--backends sqlite,postgres]

Every actor is an OS process of its own: the OpenAI simulator (`tokenpool sim`), one worker
(`python -m worker`), and --bots bots (this file with --bot-config). A bot first loads the
userbot's modules (pyrogram included), so its memory is a real bot's, then makes --calls
back-to-back `TrackedClient.chat` calls (operation "autoreply", a chat id) on six keys, the
first three with allowances that run out during the run (rotation).

Tracking overhead per call = the wall time of `chat()` minus the time of its own HTTP
exchanges, timed inside the HTTP transport (request sent -> last body byte). It includes the
openai SDK's own request building and parsing; that share is measured on bare openai calls in
the same processes and printed beside it.

PostgreSQL: $TOKENPOOL_TEST_PG_URL or postgresql://postgres@127.0.0.1:5432/test, in a schema
of its own that is dropped afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import json
import os
import platform
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import openai  # noqa: E402
import peewee  # noqa: E402
from playhouse import db_url as pw_db_url  # noqa: E402

from shared.ai.client import ClientError, TrackedClient  # noqa: E402
from shared.core.accounting import Accountant, CallRecord, record_call  # noqa: E402
from shared.core.config import load_config  # noqa: E402
from shared.core.db import connect_database, database  # noqa: E402
from shared.core.logs import setup_logging  # noqa: E402
from shared.core.models import ApiKey, UsageEvent, utcnow  # noqa: E402
from shared.core.pricing import Pricer  # noqa: E402
from shared.core.startup import open_runtime  # noqa: E402
from shared.core.status import key_status  # noqa: E402
from tests.shared.books import assert_books_exact  # noqa: E402

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
MODEL = "gpt-4o-mini"
TOKENS_PER_CALL = 88          # what a call below averages on the simulator (prompt + reply)
# (label, share of the run's expected tokens): three keys run out one after another.
KEYS = [("k1", 0.12), ("k2", 0.12), ("k3", 0.12), ("k4", 10.0), ("k5", 10.0), ("k6", 10.0)]
QUESTIONS = ["Hey, are you free tonight?", "Did you get my email about the invoice?",
             "What time does the shop close on Sundays?", "Can we move the meeting to 3?",
             "Long time no see! How have you been?", "Thanks a lot, see you there"]
CHATS_PER_BOT = 20
BOT_TARGET_MB, WORKER_TARGET_MB = 80, 50
# Each printed line adds what that import brings on top of the lines above it.
BOT_IMPORTS = ["sqlite3", "psycopg2", "pymysql", "peewee", "pydantic", "httpx2", "aiohttp", "openai",
               "genai_prices", "shared.ai.client", "pyrogram", "userbot.app"]
WORKER_IMPORTS = ["sqlite3", "psycopg2", "pymysql", "peewee", "worker.__main__"]
# The worker exactly as `python -m worker` runs, except peewee's per-query DEBUG lines are off
# (its own "tick: ... in X ms" line is DEBUG; logging every query would slow the ticks we time).
WORKER_LAUNCHER = ("import logging, sys; logging.getLogger('peewee').setLevel(logging.INFO); "
                   "from worker.__main__ import main; sys.exit(main(sys.argv[1:]))")
IMPORT_STEPS = ("import json, re, sys\n"
                "def rss(): return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
                "steps = [('python', rss())]\n"
                "for name in sys.argv[1:]:\n"
                "    __import__(name); steps.append((name, rss()))\n"
                "print(json.dumps({'steps': steps, 'loaded': sorted({m.split('.')[0] for m in sys.modules})}))")
HEAVY = ["genai_prices", "openai", "aiohttp", "pyrogram", "matplotlib", "numpy", "rich", "jinja2"]
OPENAI_STACK = ["pydantic", "httpx2", "aiohttp", "openai"]
TICK_LINE = re.compile(r"tokenpool\.worker: tick: .* in ([0-9.]+) ms$")


# --- timing HTTP exchanges (inside the bot processes) ------------------------------------------

HTTP_SECONDS: contextvars.ContextVar[list | None] = contextvars.ContextVar("http_seconds", default=None)


class TimingTransport(httpx2.AsyncBaseTransport):
    """openai's HTTP transport, timing each exchange from request sent to last body byte into
    the list in HTTP_SECONDS (set per call by the caller's task)."""

    def __init__(self):
        self._inner = httpx2.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        started = time.perf_counter()
        response = await self._inner.handle_async_request(request)
        response.stream = _TimedBody(response.stream, started, HTTP_SECONDS.get())
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TimedBody(httpx2.AsyncByteStream):
    def __init__(self, inner, started: float, sink: list | None):
        self._inner, self._started, self._sink = inner, started, sink

    async def __aiter__(self):
        async for chunk in self._inner:
            yield chunk
        if self._sink is not None:
            self._sink.append(time.perf_counter() - self._started)

    async def aclose(self) -> None:
        await self._inner.aclose()


def timed_http_client() -> openai.DefaultAsyncHttpxClient:
    return openai.DefaultAsyncHttpxClient(transport=TimingTransport())


def timed_openai(api_key: str, base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                              http_client=timed_http_client())


class TimedTrackedClient(TrackedClient):
    """The product's tracked client; its keys' shared HTTP pool uses the timing transport."""

    def __init__(self, *args):
        super().__init__(*args)
        self._http = timed_http_client()


async def timed(call) -> tuple[float, float]:
    """(wall seconds, seconds spent in HTTP exchanges) of one awaited call."""
    sink: list[float] = []
    token = HTTP_SECONDS.set(sink)
    try:
        started = time.perf_counter()
        await call()
        return time.perf_counter() - started, sum(sink)
    finally:
        HTTP_SECONDS.reset(token)


# --- one bot process ------------------------------------------------------------------------

def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


def send(message: dict) -> None:
    print(json.dumps(message), flush=True)


async def timed_calls(call, count: int) -> dict:
    """`count` calls back to back: their wall and HTTP seconds, and when they began and ended."""
    walls, https, errors = [], [], {}
    began = time.monotonic()
    for i in range(count):
        try:
            wall, http = await timed(functools.partial(call, i))
        except ClientError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        walls.append(wall)
        https.append(http)
    return {"began": began, "ended": time.monotonic(), "wall": walls, "http": https, "errors": errors}


async def solo_pairs(tracked, bare_call, pairs: int) -> dict:
    """Pairs of (bare, tracked) calls, their order alternating: wall minus HTTP of each."""
    over: dict[str, list[float]] = {"tracked": [], "bare": []}
    for i in range(pairs):
        order = [("tracked", tracked), ("bare", bare_call)]
        for name, call in (order if i % 2 else order[::-1]):
            wall, http = await timed(functools.partial(call, 10_000 + i))
            over[name].append(wall - http)
    return over


def bot_main(config_path: str, calls: int, warmup: int, control: int, control_key: str,
             base_url: str) -> int:
    # The userbot's modules, pyrogram included: what a real bot process holds in memory.
    import userbot.app  # noqa: F401
    config = load_config(config_path)
    setup_logging(config.log_level)
    return asyncio.run(bot_run(config, calls, warmup, control, control_key, base_url))


async def bot_run(config, calls: int, warmup: int, control: int, control_key: str, base_url: str) -> int:
    runtime = open_runtime(config)
    accountant = Accountant(config.bot.name, Pricer(config.pricing))
    client = TimedTrackedClient(config, runtime.keyring, accountant)
    bare = timed_openai(control_key, base_url, config.client.timeout_seconds)
    rng = random.Random(config.bot.name)
    first_chat = 1_000_000 * int(config.bot.name.rsplit("-", 1)[-1])

    def messages(i: int) -> list[dict]:
        return [{"role": "system", "content": config.autoreply.system_prompt},
                {"role": "user", "content": f"{rng.choice(QUESTIONS)} ({config.bot.name} #{i})"}]

    async def tracked(i: int):
        await client.chat(messages(i), operation="autoreply", chat_id=first_chat + i % CHATS_PER_BOT)

    async def bare_call(i: int):
        await bare.chat.completions.create(model=MODEL, messages=messages(i))

    for i in range(3):                   # connections up, code paths warm
        await bare_call(i)
    for i in range(warmup):
        await tracked(-1 - i)
    send({"ready": True, "rss_kb": rss_kb()})
    sys.stdin.readline()          # "control": bare openai calls, all bots at once
    send({"control": True, **await timed_calls(bare_call, control)})
    sys.stdin.readline()          # "go": tracked calls, all bots at once
    send({"done": True, **await timed_calls(tracked, calls)})
    while sys.stdin.readline().strip() == "solo":     # this bot alone: bare and tracked alternating
        send({"solo": True, **await solo_pairs(tracked, bare_call, max(50, calls // 2))})
    # "exit", once the parent has read our memory
    await client.aclose()
    await bare.close()
    accountant.close()
    runtime.db.close()
    return 0


# --- the load run (parent) --------------------------------------------------------------------

def control_calls(args) -> int:
    return max(20, args.calls // 5)


def config_text(url: str, name: str, base_url: str, limits: dict[str, int], secrets: dict[str, str], *,
                log_level: str = "INFO", low: int = 0) -> str:
    keys = "".join(f'\n[[keys]]\nlabel = "{label}"\napi_key = "{secrets[label]}"\n'
                   f'daily_token_limit = {limits[label]}\nbase_url = "{base_url}"\n' for label, _ in KEYS)
    return f"""log_level = "{log_level}"

[database]
url = {json.dumps(url)}

[pool]
daily_token_limit = 1000000000000
low_threshold = {low}

[client]
timeout_seconds = 15.0

[bot]
name = "{name}"

[worker]
tick_seconds = 0.5
lease_seconds = 5.0
headroom_tokens = {TOKENS_PER_CALL * 2}
{keys}"""


def start_simulator(config_path: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.tools.cli", "--config", str(config_path), "sim", "--port", "0", "--json",
         "--rpm", "100000000", "--tpm", "1000000000000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = process.stdout.readline()
    if not line:
        raise SystemExit("the simulator did not start (run `tokenpool sim --port 0` to see why)")
    return process, json.loads(line)["base_url"]


def stop(process: subprocess.Popen, timeout: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def read_message(bot: subprocess.Popen, log: Path, want: str) -> dict:
    line = bot.stdout.readline()
    if not line:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise SystemExit(f"a bot process ended early (exit {bot.wait()}); its log ends:\n{tail}")
    message = json.loads(line)
    assert message.get(want), message
    return message


def tell(bots: list[subprocess.Popen], word: str) -> None:
    for bot in bots:
        bot.stdin.write(word + "\n")
        bot.stdin.flush()


def wait_for_ranking(deadline_seconds: float = 20) -> None:
    from shared.core.models import KeyRanking
    deadline = time.monotonic() + deadline_seconds
    while not KeyRanking.select().exists():
        if time.monotonic() > deadline:
            raise SystemExit("the worker published no ranking (see worker.log)")
        time.sleep(0.1)


def run_load(url: str, args, work: Path) -> dict:
    expected = args.bots * (args.calls + args.warmup) * TOKENS_PER_CALL
    limits = {label: max(500, int(share * expected)) for label, share in KEYS}
    secrets = {label: f"sk-load-{label}-{uuid.uuid4().hex}" for label, _ in KEYS}
    low = max(200, expected // 30)
    sim_config = work / "sim.toml"
    sim_config.write_text(config_text(url, "sim", "", limits, secrets))
    sim, base_url = start_simulator(sim_config)
    worker_config = work / "worker.toml"
    worker_config.write_text(config_text(url, "worker", base_url, limits, secrets, log_level="DEBUG", low=low))
    config = load_config(worker_config)
    open_runtime(config)                  # migrate and register the keys before anyone starts
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    worker_log = work / "worker.log"
    files = contextlib.ExitStack()
    worker = subprocess.Popen([sys.executable, "-c", WORKER_LAUNCHER, "--config", str(worker_config)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=files.enter_context(open(worker_log, "w")), env=env)
    bots, logs = [], []
    try:
        wait_for_ranking()
        control_key = f"sk-control-{uuid.uuid4().hex}"
        for n in range(1, args.bots + 1):
            path = work / f"bot-{n}.toml"
            path.write_text(config_text(url, f"load-bot-{n}", base_url, limits, secrets, low=low))
            logs.append(work / f"bot-{n}.log")
            command = [sys.executable, str(Path(__file__).resolve()), "--bot-config", str(path),
                       "--calls", str(args.calls), "--warmup", str(args.warmup), "--control", str(control_calls(args)),
                       "--control-key", control_key, "--base-url", base_url]
            bots.append(subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=files.enter_context(open(logs[-1], "w")), text=True, env=env))
        ready = [read_message(bot, log, "ready") for bot, log in zip(bots, logs)]
        tell(bots, "control")
        control = [read_message(bot, log, "control") for bot, log in zip(bots, logs)]
        tick_from = worker_log.stat().st_size
        tell(bots, "go")
        done = [read_message(bot, log, "done") for bot, log in zip(bots, logs)]
        tell(bots[:1], "solo")
        solo = read_message(bots[0], logs[0], "solo")
        with open(worker_log) as f:
            f.seek(tick_from)
            ticks = [float(m.group(1)) for line in f if (m := TICK_LINE.search(line.rstrip()))]
        memory = {f"bot-{n}": rss_kb(bot.pid) for n, bot in enumerate(bots, 1)}
        memory["worker"] = rss_kb(worker.pid)
        memory["simulator"] = rss_kb(sim.pid)
        tell(bots, "exit")
        codes = {f"bot-{n}": bot.wait(timeout=30) for n, bot in enumerate(bots, 1)}
    finally:
        for bot in bots:
            stop(bot)
        codes_worker = stop(worker)
        stop(sim)
        files.close()
    codes["worker"] = codes_worker
    books = check_books(config)
    database.obj.close()
    return {"ready": ready, "control": control, "done": done, "solo": solo, "ticks": ticks, "memory": memory,
            "codes": codes, "low": low, "books": books}


def check_books(config) -> dict:
    try:
        assert_books_exact()
        exact, problem = True, ""
    except AssertionError as exc:
        exact, problem = False, str(exc)[:300] or "a counter differs from its events"
    outcomes = dict(UsageEvent.select(UsageEvent.outcome, peewee.fn.COUNT(UsageEvent.id))
                    .group_by(UsageEvent.outcome).tuples())
    now = utcnow()
    keys = [(k.label, key_status(k, now, config.pool.low_threshold).value, k.used_today, k.daily_token_limit,
             k.calls_today) for k in ApiKey.select().order_by(ApiKey.position)]
    return {"exact": exact, "problem": problem, "outcomes": outcomes, "keys": keys}


# --- naive tracker vs record_call as history grows ----------------------------------------------

class NaiveJsonTracker:
    """The naive tracker of small write-ups of this idea: on every call, load token_usage.json,
    add to the totals, append the call, and write the whole file back."""

    PRICES = {"input": 0.15 / 1e6, "output": 0.60 / 1e6}

    def __init__(self, path: Path):
        self.path = path

    def track(self, call: dict) -> None:
        with open(self.path) as f:
            data = json.load(f)
        self.add(data, call)
        with open(self.path, "w") as f:
            f.write(json.dumps(data))   # 3x faster than json.dump's many small writes: the kinder choice

    @classmethod
    def entry(cls, at: dt.datetime, operation: str, prompt: int, completion: int) -> dict:
        input_cost, output_cost = prompt * cls.PRICES["input"], completion * cls.PRICES["output"]
        return {"timestamp": at.isoformat(), "operation": operation, "model": MODEL, "prompt_tokens": prompt,
                "completion_tokens": completion, "total_tokens": prompt + completion, "input_cost": input_cost,
                "output_cost": output_cost, "cost": input_cost + output_cost}

    @staticmethod
    def empty() -> dict:
        return {"total_calls": 0, "total_prompt_tokens": 0, "total_completion_tokens": 0, "total_tokens": 0,
                "total_cost": 0.0, "daily": {}, "by_operation": {}, "calls": []}

    @staticmethod
    def add(data: dict, call: dict) -> None:
        data["total_calls"] += 1
        data["total_prompt_tokens"] += call["prompt_tokens"]
        data["total_completion_tokens"] += call["completion_tokens"]
        data["total_tokens"] += call["total_tokens"]
        data["total_cost"] += call["cost"]
        for bucket in (data["daily"].setdefault(call["timestamp"][:10], {"calls": 0, "tokens": 0, "cost": 0.0}),
                       data["by_operation"].setdefault(call["operation"], {"calls": 0, "tokens": 0, "cost": 0.0})):
            bucket["calls"] += 1
            bucket["tokens"] += call["total_tokens"]
            bucket["cost"] += call["cost"]
        data["calls"].append(call)


def synthetic_history(count: int, start: int, rng: random.Random) -> list[tuple]:
    """(at, key index, bot, chat, prompt, completion) of `count` past calls over 30 days."""
    now = utcnow()
    return [(now - dt.timedelta(seconds=rng.randint(60, 30 * 86400)), rng.randrange(len(KEYS)),
             f"load-bot-{1 + (start + i) % 8}", 1_000_000 + (start + i) % 160, rng.randint(20, 60),
             rng.randint(15, 90)) for i in range(count)]


def timed_naive(sizes: list[int], work: Path) -> dict[int, float]:
    path = work / "token_usage.json"
    data = NaiveJsonTracker.empty()
    rng = random.Random(2)
    tracker = NaiveJsonTracker(path)
    medians = {}
    for size in sizes:
        have = data["total_calls"]
        for at, _, _, _, prompt, completion in synthetic_history(size - have, have, rng):
            NaiveJsonTracker.add(data, NaiveJsonTracker.entry(at, "autoreply", prompt, completion))
        path.write_text(json.dumps(data))
        times = []
        for _ in range(max(10, min(200, 1_000_000 // size))):
            call = NaiveJsonTracker.entry(utcnow(), "autoreply", rng.randint(20, 60), rng.randint(15, 90))
            started = time.perf_counter()
            tracker.track(call)
            times.append(time.perf_counter() - started)
        data = json.loads(path.read_text())
        medians[size] = statistics.median(times)
    return medians


def timed_record_call(url: str, sizes: list[int], calls: int) -> dict[int, float]:
    """Median seconds of record_call with `size` events of history already in the database."""
    from shared.core.config import parse_config
    from shared.core.keys import sync_keys
    from shared.core.schema import ensure_schema
    db = connect_database(url)
    ensure_schema(db)
    keys = [{"label": label, "api_key": f"sk-hist-{label}-{'x' * 24}"} for label, _ in KEYS]
    config = parse_config({"database": {"url": url}, "keys": keys}, "history.toml", env={})
    key_ids = sync_keys(config).ids()
    anchors = {k.id: k.window_anchor for k in ApiKey.select()}
    pricer = Pricer()
    rng = random.Random(3)
    have, medians = 0, {}
    for size in sizes:
        rows = [{"call_id": uuid.uuid4().hex, "at": at, "key": key_ids[k], "window_start": at, "bot": bot,
                 "operation": "autoreply", "model": MODEL, "input_tokens": p, "output_tokens": c,
                 "total_tokens": p + c, "cost_nanousd": 15 * p + 60 * c, "duration_ms": 300, "outcome": "ok",
                 "chat_id": chat} for at, k, bot, chat, p, c in synthetic_history(size - have, have, rng)]
        with db.atomic():
            for i in range(0, len(rows), 1000):
                UsageEvent.insert_many(rows[i:i + 1000]).execute()
        have = UsageEvent.select().count()
        times = []
        for i in range(calls):
            key = rng.choice(key_ids)
            call = CallRecord(key_id=key, bot="load-bot-1", operation="autoreply", model=MODEL,
                              input_tokens=rng.randint(20, 60), output_tokens=rng.randint(15, 90),
                              duration_ms=300, chat_id=1_000_000 + i % 20)
            started = time.perf_counter()
            record_call(call, anchor=anchors[key], pricer=pricer)
            times.append(time.perf_counter() - started)
        have = UsageEvent.select().count()
        medians[size] = statistics.median(times)
    db.close()
    return medians


# --- databases ---------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(backend: str, work: Path, name: str):
    """A URL to an empty database: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{work / (name + '.db')}"
        return
    base = os.environ.get("TOKENPOOL_TEST_PG_URL", PG_DEFAULT)
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = pw_db_url.connect(base)
    admin.execute_sql(f"CREATE SCHEMA {schema}")
    try:
        parts = urlparse(base)
        query = f"options=-csearch_path%3D{schema}"
        yield urlunparse(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))
    finally:
        if database.obj is not None and not database.obj.is_closed():
            database.obj.close()
        admin.execute_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


# --- output ----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


def phase(messages: list[dict]) -> dict:
    """Pooled figures of one phase of all bots: wall, HTTP and overhead seconds, rate, errors."""
    walls = [w for m in messages for w in m["wall"]]
    https = [h for m in messages for h in m["http"]]
    errors: dict[str, int] = {}
    for m in messages:
        for name, count in m["errors"].items():
            errors[name] = errors.get(name, 0) + count
    elapsed = max(m["ended"] for m in messages) - min(m["began"] for m in messages)
    if any(h == 0 for h in https):
        raise SystemExit("a call's HTTP exchange went untimed: the timing transport is not in its path")
    return {"wall": walls, "http": https, "over": [w - h for w, h in zip(walls, https)], "elapsed": elapsed,
            "rate": len(walls) / elapsed, "errors": errors}


def report_load(title: str, url: str, args, result: dict) -> None:
    tracked, bare = phase(result["done"]), phase(result["control"])
    ms = 1000

    def line(label: str, values: list[float], note: str = "") -> None:
        print(f"{label:27} p50 {statistics.median(values) * ms:6.2f} ms   p99 {pct(values, .99) * ms:7.2f} ms{note}")

    def share(tracked_over: list[float], bare_over: list[float], note: str = "") -> None:
        difference = statistics.median(tracked_over) - statistics.median(bare_over)
        print(f"    tracking's own share    p50 {difference * ms:6.2f} ms   (difference of the two medians{note})")

    print(f"\n== {title}: {args.bots} bot processes x {args.calls} tracked calls, 6 keys, 1 worker, 1 simulator ==")
    print(f"   database {url}")
    failed = sum(tracked["errors"].values())
    print(f"all bots at once, calls back to back ({os.cpu_count()} cores, shared with the simulator, the worker "
          "and the database: saturated)")
    print(f"  calls/s overall           {tracked['rate']:,.0f} tracked calls/s  ({len(tracked['wall']):,} answered in "
          f"{tracked['elapsed']:.2f} s, first call to last of all bots; failed: {failed} {tracked['errors'] or ''})")
    print(f"  control: bare openai      {bare['rate']:,.0f} calls/s  ({len(bare['wall']):,} calls, "
          f"{control_calls(args)} per bot, all bots at once just before)")
    print(f"  machine time per call     tracked {1000 / tracked['rate']:.2f} ms, bare {1000 / bare['rate']:.2f} ms: "
          f"tracking adds {1000 / tracked['rate'] - 1000 / bare['rate']:.2f} ms (1 / calls per second, "
          "all cores busy)")
    line("  tracked call (chat) wall", tracked["wall"])
    line("    its HTTP exchanges", tracked["http"])
    line("  tracking overhead/call", tracked["over"], "   = chat() wall minus its own HTTP exchanges")
    line("    bare openai, same", bare["over"], "   = the SDK's own share (control phase)")
    share(tracked["over"], bare["over"], "; includes waiting for a CPU")
    solo = result["solo"]
    print(f"one bot alone (the others idle): {len(solo['tracked'])} tracked and {len(solo['bare'])} bare calls, "
          "alternating")
    line("  tracking overhead/call", solo["tracked"], "   = chat() wall minus its own HTTP exchanges")
    line("    bare openai, same", solo["bare"])
    share(solo["tracked"], solo["bare"])
    ticks = result["ticks"]
    if ticks:
        print(f"worker tick                 median {statistics.median(ticks):.1f} ms   p90 {pct(ticks, .9):.1f} ms   "
              f"max {max(ticks):.1f} ms   ({len(ticks)} ticks during the run, from its 'tick: ... in X ms' line)")
    else:
        print("worker tick                 no tick logged during the run")
    books = result["books"]
    outcomes = ", ".join(f"{n:,} {o}" for o, n in sorted(books["outcomes"].items(), key=lambda x: -x[1]))
    print(f"events                      {sum(books['outcomes'].values()):,}: {outcomes} "
          f"(incl. {args.warmup} untimed warm-up calls per bot and bot-1's solo calls)")
    print("keys at the end             " + ", ".join(f"{label} {status} {used:,}/{limit:,}"
                                                   for label, status, used, limit, _ in books["keys"]))
    print(f"                            (the first three keys hold ~12% of the run's tokens each; "
          f"LOW under {result['low']:,} left)")
    memory = result["memory"]
    bots = [kb for name, kb in memory.items() if name.startswith("bot-")]
    at_ready = [r["rss_kb"] for r in result["ready"]]
    print("RSS of each bot at the end  " + " ".join(f"{kb / 1024:.0f}" for kb in bots)
          + " MB (VmRSS; each has loaded userbot.app, pyrogram included, as a real bot has)")
    print(f"  bot max {mb(max(bots))} (after start-up, before the calls: max {mb(max(at_ready))}); "
          f"target < {BOT_TARGET_MB} MB: {'PASS' if max(bots) < BOT_TARGET_MB * 1024 else 'FAIL'}")
    print(f"  worker {mb(memory['worker'])}; target < {WORKER_TARGET_MB} MB: "
          f"{'PASS' if memory['worker'] < WORKER_TARGET_MB * 1024 else 'FAIL'}")
    print(f"  simulator {mb(memory['simulator'])} (no target)")
    answered = len(tracked["wall"]) + args.bots * args.warmup + len(solo["tracked"])
    ok = books["outcomes"].get("ok", 0)
    print(f"answered == ok events       {answered:,} calls answered, {ok:,} ok events: "
          f"{'yes' if answered == ok else 'NO'}")
    bad = {name: code for name, code in result["codes"].items() if code != 0}
    print(f"exit codes                  {bad if bad else 'all 0'}")
    print(f"exactness                   {'EXACT' if books['exact'] else 'NOT EXACT: ' + books['problem']}: "
          f"every key counter (today and lifetime) == sum of its events; every daily rollup == its events")


def import_steps(modules: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", IMPORT_STEPS, *modules],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def report_imports() -> None:
    print("\n== Where the memory goes: a fresh process, imports in this order (each line adds to the ones above) ==")
    for title, modules in (("bot", BOT_IMPORTS), ("worker", WORKER_IMPORTS)):
        measured = import_steps(modules)
        steps = measured["steps"]
        added = {name: kb - before for (name, kb), (_, before) in zip(steps[1:], steps)}
        print(f"{title:7} python {steps[0][1] / 1024:.1f}, "
              + ", ".join(f"{name} +{kb / 1024:.1f}" for name, kb in added.items()) + f"  = {mb(steps[-1][1])}")
        absent = [name for name in HEAVY if name not in measured["loaded"]]
        print(f"{'':7} not loaded: {', '.join(absent) or 'none of ' + ', '.join(HEAVY)}")
        if "pyrogram" in added:
            stack = sum(added[name] for name in OPENAI_STACK)
            print(f"{'':7} pyrogram ({mb(added['pyrogram'])}) and the openai stack ({', '.join(OPENAI_STACK)}: "
                  f"{mb(stack)}) alone take {mb(added['pyrogram'] + stack)} on top of Python's {mb(steps[0][1])}")


def report_history(sizes: list[int], naive: dict[int, float], ours: dict[str, dict[int, float]]) -> None:
    print("\n== Per-call cost as history grows: naive JSON file (load, add, append, dump it all) "
          "vs record_call ==")
    header = f"{'history':>9} {'naive JSON ms':>14}"
    for name in ours:
        header += f" {'record_call ' + name + ' ms':>26} {'naive/ours':>10}"
    print(header)
    for size in sizes:
        line = f"{size:>9,} {naive[size] * 1000:>14.2f}"
        for medians in ours.values():
            line += f" {medians[size] * 1000:>26.3f} {naive[size] / medians[size]:>9.0f}x"
        print(line)
    if len(sizes) < 2:
        return
    first, last = sizes[0], sizes[-1]
    growth = f"growth {first:,} -> {last:,} calls: naive x{naive[last] / naive[first]:.1f}"
    for name, medians in ours.items():
        growth += f", record_call {name} x{medians[last] / medians[first]:.2f}"
    print(growth + "  (medians of each size's timed calls)")


# --- main ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="tracked calls per bot (default 500)")
    parser.add_argument("--bots", type=int, default=8, help="bot processes (default 8)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed tracked calls per bot first (default 5)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--history", default="1000,10000,100000", help="history sizes for the JSON comparison")
    parser.add_argument("--history-calls", type=int, default=300, help="timed record_calls per history size")
    parser.add_argument("--bot-config", help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control-key", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot_config:
        return bot_main(args.bot_config, args.calls, args.warmup, args.control, args.control_key, args.base_url)
    started = time.monotonic()
    print("$ " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"{os.cpu_count()} cores, Python {platform.python_version()}, {dt.datetime.now():%Y-%m-%d %H:%M}, "
          f"load average before the run {os.getloadavg()[0]:.2f}")
    backends = [b for b in args.backends.split(",") if b]
    titles = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    sizes = [int(x) for x in args.history.split(",")]
    ours = {}
    with tempfile.TemporaryDirectory(prefix="tokenpool-load-") as tmp:
        for backend in backends:
            work = Path(tmp) / backend
            work.mkdir()
            try:
                with fresh_database(backend, work, "load") as url:
                    result = run_load(url, args, work)
                    report_load(titles[backend], url, args, result)
                with fresh_database(backend, work, "history") as url:
                    ours[titles[backend]] = timed_record_call(url, sizes, args.history_calls)
            except peewee.OperationalError as exc:
                print(f"\n{backend}: unreachable ({str(exc).strip().splitlines()[0]}); skipped")
        report_imports()
        naive = timed_naive(sizes, Path(tmp))
        report_history(sizes, naive, ours)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
