"""Resident memory of a bot process beside the floor of the libraries it is built on.

The floor: a process that imports only `pyrogram` (kurigram) and `openai`, nothing of ours.
The bot: a process that imports `userbot.app` (the real bot module, Telegram client code
included), opens the database, warms up, and then serves simulated private chats through
the real auto-reply core (`userbot.simulate`: guards, the tracked client, key selection,
accounting) against the offline simulator in its own process; then runs the real `.chart`
and `.export` command handlers, then more traffic. What is missing against a live bot: the
MTProto connection and its session storage (no Telegram server here).

Each figure is the process's VmRSS from /proc, sampled after the step (steady traffic:
after --seconds of chats). Beside it, for comparison, the same chart rendered inside the
process instead of in the helper process (what the bot did before).

Run:  .venv/bin/python bench/memory.py [--seconds 20] [--accounts 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def floor(imports: str) -> float:
    code = f"import {imports}; from bench.memory import rss_mb; print(rss_mb())" if imports else \
        "from bench.memory import rss_mb; print(rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    return float(out.stdout.strip())


def bot_config(base_url: str, database_url: str, name: str = "bench-bot", autoreply: dict | None = None):
    from bench.client_overhead import SECRET
    from shared.core.config import parse_config
    return parse_config({"database": {"url": database_url}, "bot": {"name": name}, "autoreply": autoreply or {},
                         "keys": [{"label": f"k{i}", "api_key": SECRET + str(i), "base_url": base_url,
                                   "daily_token_limit": 10 ** 12} for i in range(3)]}, "bench.toml", env={})


async def bot_steps(base_url: str, database_url: str, seconds: float, in_process_chart: bool,
                    accounts: int = 1) -> list:
    """The bot process's own steps: [(step, rss MB, open fds)]. With `accounts` > 1 the
    process serves that many accounts (`userbot.accounts`: one database thread, HTTP pool
    and pricer; each its own Pyrogram client, name, store and settings), each chatting at
    the same rate as the one account does."""
    import dataclasses
    import datetime as dt

    from pyrogram import Client

    from shared.core.db_drivers import keep_unused_drivers_out
    keep_unused_drivers_out(database_url)                   # as `tokenpool-bot` does before peewee loads
    import userbot.app  # noqa: F401  (the real bot module, pyrogram and all)
    from shared.core.models import utcnow
    from userbot import report_commands
    from userbot.commands import CommandContext
    from userbot.core import keep_trio_out
    from userbot.session import TelegramCredentials, make_client
    from userbot.simulate import simulate_accounts
    from userbot.state import Store

    keep_trio_out()                                          # as `tokenpool-bot` does before it runs
    config = bot_config(base_url, database_url)
    configs = [dataclasses.replace(config, bot=dataclasses.replace(config.bot, name=f"{config.bot.name}-{i + 1}"))
               for i in range(accounts)] if accounts > 1 else [config]
    # Each account's Pyrogram client, as the bot makes it (never started: no MTProto server here).
    clients = [make_client(c, TelegramCredentials(1, "0" * 32, f"bench-session-{i}"), Client)
               for i, c in enumerate(configs)]
    steps = [("imported userbot.app", rss_mb(), open_fds())]
    await simulate_accounts(configs, seconds=2, seed=1, rate=1.0)      # start-up: runtime, warm-up, first chats
    steps.append(("started, first chats", rss_mb(), open_fds()))
    await simulate_accounts(configs, seconds=seconds, seed=2)
    steps.append((f"after {seconds:g} s of chats", rss_mb(), open_fds()))
    ctx = CommandContext(bot=config.bot.name, config=config, store=Store(config.bot.name), now=utcnow())
    upload(report_commands.chart(CommandContext(**{**ctx.__dict__, "args": ("30",)})))
    steps.append((".chart 30 (helper process)", rss_mb(), open_fds()))
    upload(report_commands.export(CommandContext(**{**ctx.__dict__, "args": ("json", "7")})))
    steps.append((".export json 7 (helper process)", rss_mb(), open_fds()))
    await simulate_accounts(configs, seconds=seconds, seed=3)
    steps.append((f"after {seconds:g} s more chats", rss_mb(), open_fds()))
    assert len(clients) == accounts
    if in_process_chart:
        from shared.reports.charts import usage_chart
        usage_chart(utcnow() + dt.timedelta(0), 30)
        steps.append(("for comparison: a chart rendered in-process", rss_mb(), open_fds()))
    return steps


def upload(reply) -> None:
    """What the bot does with a report's file: Pyrogram reads it from its path in 512 KB
    parts to upload it (no MTProto here: the parts are dropped), then the bot deletes it."""
    try:
        for attachment in (reply.photo, reply.document):
            if attachment is not None and attachment.path:
                with open(attachment.path, "rb") as file:
                    while file.read(512 * 1024):
                        pass
    finally:
        reply.discard_files()


def run_bot_process(seconds: float, accounts: int = 1) -> list:
    from bench.client_overhead import start_simulator
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_simulator(tmp)
        try:
            out = subprocess.run([sys.executable, "-m", "bench.memory", "--bot", base_url, f"sqlite:///{tmp}/bot.db",
                                  "--seconds", str(seconds), "--accounts", str(accounts)], cwd=ROOT,
                                 capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, check=True)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of simulated chats per phase")
    parser.add_argument("--accounts", type=int, default=1,
                        help="also measure one process serving this many accounts against one serving one")
    parser.add_argument("--bot", nargs=2, metavar=("BASE_URL", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot:
        import logging
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(asyncio.run(bot_steps(*args.bot, args.seconds, in_process_chart=args.accounts == 1,
                                               accounts=args.accounts))))
        return 0
    python, floor_mb = floor(""), floor("pyrogram, openai")
    steps = run_bot_process(args.seconds)
    many = run_bot_process(args.seconds, args.accounts) if args.accounts > 1 else []
    print(f"resident memory (VmRSS), {os.cpu_count()} cores, shared machine")
    print(f"  python alone                         {python:6.1f} MB")
    print(f"  floor: import pyrogram, openai       {floor_mb:6.1f} MB   (the libraries alone; target: floor + 25 MB)")
    for step, mb, fds in steps:
        print(f"  bot: {step:<32} {mb:6.1f} MB   floor {mb - floor_mb:+6.1f} MB   {fds} fds")
    steady = [mb for step, mb, _ in steps if not step.startswith("for comparison")]
    print(f"  bot at most {max(steady):.1f} MB = floor {max(steady) - floor_mb:+.1f} MB "
          f"({'within' if max(steady) - floor_mb <= 25 else 'OVER'} the +25 MB target)")
    if many:
        print(f"  {args.accounts} accounts in one process (each chatting as the one account does):")
        for (step, mb, fds), (_, one, _) in zip(many, steps):
            print(f"  {args.accounts} accounts: {step:<27} {mb:6.1f} MB   {mb / one:5.2f}x one account   {fds} fds")
        most = max(mb for _, mb, _ in many)
        print(f"  {args.accounts} accounts at most {most:.1f} MB = {most / max(steady):.2f}x one account's "
              f"{max(steady):.1f} MB ({'within' if most / max(steady) <= 1.3 else 'OVER'} the 1.3x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
