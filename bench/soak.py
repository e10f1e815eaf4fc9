"""A bot process under steady traffic for a long time: its resident memory and open file
descriptors, sampled each minute and printed as a series (they should stay flat).

The bot process is the real auto-reply core (`userbot.simulate`: guards, the tracked
client, key selection, accounting; `userbot.app` imported, so pyrogram is loaded) serving
40 simulated private chats against the offline simulator in its own process, with a
`.chart 30` and an `.export json 7` (the real command handlers) every 10 minutes. The
people write again 5-15 s after each answer, faster than people do, so two guards are
set out of their way: the per-chat hourly cap (at its default, 20 replies a chat an hour,
it held every chat after ~10 minutes and the traffic stopped) and the loop guard (it took
7 of the 40 chats for machines within 12 minutes and paused them for 6 hours: the AI calls
fell from 80 to 62 a minute). The sampler reads /proc/<pid> of the bot from outside, and the number
of AI calls booked in the minute from the database (the traffic is steady when it is).

Run:  .venv/bin/python bench/soak.py [--minutes 60]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.memory import open_fds, rss_mb  # noqa: E402

COMMANDS_EVERY = float(os.environ.get("SOAK_COMMANDS_EVERY", "600"))
# Steady traffic for the whole run (see above): no per-chat hourly cap, no loop pause.
STEADY = {"max_replies_per_chat_per_hour": 0, "loop_max_fast_exchanges": 1000}


async def bot(base_url: str, database_url: str, seconds: float) -> None:
    import logging

    from shared.core.db_drivers import keep_unused_drivers_out
    keep_unused_drivers_out(database_url)                   # as `tokenpool-bot` does before peewee loads
    import userbot.app  # noqa: F401  (the real bot module, pyrogram and all)
    from bench.memory import bot_config, upload
    from shared.core.models import utcnow
    from userbot import report_commands
    from userbot.commands import CommandContext
    from userbot.core import keep_trio_out
    from userbot.simulate import simulate
    from userbot.state import Store
    logging.basicConfig(level=logging.ERROR)
    keep_trio_out()                                          # as `tokenpool-bot` does before it runs
    config = bot_config(base_url, database_url, name="soak-bot", autoreply=STEADY)
    deadline = time.monotonic() + seconds

    async def commands():
        while time.monotonic() + COMMANDS_EVERY < deadline:
            await asyncio.sleep(COMMANDS_EVERY)
            ctx = dict(bot=config.bot.name, config=config, store=Store(config.bot.name), now=utcnow())
            # Sent as the bot sends them: the helper's file read from its path, then deleted.
            upload(await asyncio.to_thread(report_commands.chart, CommandContext(**ctx, args=("30",))))
            upload(await asyncio.to_thread(report_commands.export, CommandContext(**ctx, args=("json", "7"))))

    await asyncio.gather(simulate(config, seconds=seconds, seed=7), commands())


def calls_booked(path: str) -> int:
    """AI calls booked so far (read-only, from outside the bot)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return db.execute("SELECT count(*) FROM usage_event").fetchone()[0]
    except sqlite3.Error:
        return 0        # not created yet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--bot", nargs=2, metavar=("BASE_URL", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot:
        asyncio.run(bot(*args.bot, args.minutes * 60))
        return 0
    from bench.client_overhead import start_simulator
    with tempfile.TemporaryDirectory() as tmp:
        simulator, base_url = start_simulator(tmp)
        child = subprocess.Popen([sys.executable, "-m", "bench.soak", "--bot", base_url, f"sqlite:///{tmp}/soak.db",
                                  "--minutes", str(args.minutes)], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        print(f"soak: one bot process, 40 chats, .chart and .export every {COMMANDS_EVERY / 60:g} min, "
              f"{args.minutes:g} min; sampled each minute (shared machine)", flush=True)
        print(f"{'minute':>6} {'RSS MB':>8} {'open fds':>9} {'AI calls':>9}", flush=True)
        booked = 0
        series = []
        started = time.monotonic()
        try:
            minute = 0
            while child.poll() is None:
                try:
                    sample = (rss_mb(child.pid), open_fds(child.pid))
                except (FileNotFoundError, ProcessLookupError, RuntimeError):
                    break
                series.append(sample)
                calls = calls_booked(os.path.join(tmp, "soak.db"))
                print(f"{minute:>6} {sample[0]:>8.1f} {sample[1]:>9} {calls - booked:>9}", flush=True)
                booked = calls
                minute += 1
                time.sleep(max(0.0, started + 60 * minute - time.monotonic()))
            code = child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
            simulator.terminate()
            simulator.wait(timeout=10)
    if len(series) > 2:
        settled = series[2:]
        print(f"from minute 2: RSS {min(s[0] for s in settled):.1f}–{max(s[0] for s in settled):.1f} MB "
              f"(last − minute 2: {settled[-1][0] - settled[0][0]:+.1f} MB), "
              f"fds {min(s[1] for s in settled)}–{max(s[1] for s in settled)}; bot exit code {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
