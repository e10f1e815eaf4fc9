"""`tokenpool demo`: the whole product, offline, in about half a minute on an idle machine.

It starts the OpenAI simulator with a few small-allowance keys, a rotation worker and two
simulated bot processes (the userbot's real auto-reply logic, with only the Telegram
transport replaced), shows a live view while keys go LOW, EXHAUSTED and rate-limited,
then prints the `.stats` panel and a usage report and writes a chart. The bots and the
worker are separate processes started by command line; they meet only in the database.
"""
from __future__ import annotations

import html
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from shared.core.config import load_config
from shared.core.models import UsageEvent, utcnow
from shared.core.startup import open_runtime
from shared.reports import charts, queries, render_telegram
from shared.reports.render_terminal import stats_view, usage_view
from shared.tools.monitor import monitor_view
from shared.tools.simulator import Fault, Simulator
from shared.tools.terminal import show

# label, our daily limit, the provider's own allowance (None: ours is the tighter one)
DEMO_KEYS = [("alpha", 3_000, None), ("bravo", 6_000, None), ("charlie", 30_000, 4_000),
             ("delta", 100_000, None)]
BOTS = ("demo-bot-1", "demo-bot-2")
# Replies each bot sends before it stops (as many as an idle machine manages in 20 s): the pool
# then has moved past a dry key (alpha, then charlie's provider allowance) however slow the machine.
MIN_MESSAGES = 60


def write_demo_config(workdir: Path, database_url: str, base_url: str, secrets_by_label: dict[str, str]) -> Path:
    keys = "".join(
        f'\n[[keys]]\nlabel = "{label}"\napi_key = "{secrets_by_label[label]}"\n'
        f'daily_token_limit = {limit}\nbase_url = "{base_url}"\n'
        for label, limit, _ in DEMO_KEYS)
    text = f"""# Written by `tokenpool demo`; the keys are made up and only the local simulator knows them.
data_dir = {json.dumps(str(workdir))}
log_level = "INFO"

[database]
url = {json.dumps(database_url)}

[pool]
low_threshold = 2000

[client]
timeout_seconds = 10.0

[autoreply]
cooldown_seconds = 1
context_messages = 6
max_output_tokens = 120

[worker]
tick_seconds = 0.5
lease_seconds = 3.0
headroom_tokens = 400
{keys}"""
    path = workdir / "demo-config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def run_demo(*, seconds: float = 20.0, min_messages: int = MIN_MESSAGES, database_url: str | None = None,
             workdir: str | None = None, live: bool = True, console: Console | None = None) -> int:
    console = console or Console()
    work = Path(workdir or tempfile.mkdtemp(prefix="tokenpool-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{work / 'demo.db'}"
    secrets_by_label = {label: f"sk-demo-{secrets.token_hex(12)}" for label, _, _ in DEMO_KEYS}
    sim = Simulator(latency=0.05)
    for label, _limit, allowance in DEMO_KEYS:
        sim.add_key(secrets_by_label[label], label=label, allowance=allowance)
    # bravo hits the provider's rate limit a few times: cooldowns and rotation to show.
    sim.script("bravo", *([Fault.ok()] * 6), Fault.rate_limit(2.0), *([Fault.ok()] * 4), Fault.rate_limit(1.0))
    base_url = sim.start_in_thread()
    config_path = write_demo_config(work, database_url, base_url, secrets_by_label)
    config = load_config(config_path)
    open_runtime(config)  # migrate and register the keys before the processes start
    console.print(f"[bold]tokenpool demo[/]: simulator at {base_url}, database {database_url}, "
                  f"{len(DEMO_KEYS)} keys, {len(BOTS)} bots, worker; the bots chat {seconds:.0f} s and "
                  f"until each has sent {min_messages} replies")
    procs = _start_processes(config_path, work, seconds, min_messages)
    stuck: list[str] = []
    try:
        stuck = _watch(procs, config, seconds, live, console)
    finally:
        failures = _stop_processes(procs, stuck)
        sim.stop()
    return _finish(config, work, failures, console)


def _start_processes(config_path: Path, work: Path, seconds: float, min_messages: int) -> dict[str, subprocess.Popen]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = {"worker": subprocess.Popen([sys.executable, "-m", "worker", "--config", str(config_path)],
                                        stdout=subprocess.DEVNULL, stderr=open(work / "worker.log", "w"),
                                        env=env)}
    for seed, name in enumerate(BOTS):
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "userbot", "--config", str(config_path), "simulate", "--name", name,
             "--seconds", str(seconds), "--min-messages", str(min_messages), "--seed", str(seed)],
            stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "w"), env=env)
    return procs


# Waiting is for conditions, not for a clock: the bots end by themselves once their chat
# time is over, they have sent their replies and their last wave is answered, however slow the
# machine. Only a bot still running this long after its chat time is treated as stuck.
STUCK_AFTER_SECONDS = 600.0
STOP_GRACE_SECONDS = 300.0


def _watch(procs, config, seconds: float, live: bool, console: Console) -> list[str]:
    """Wait until every bot has exited on its own; returns the names of bots that seemed stuck."""
    deadline = time.monotonic() + seconds + STUCK_AFTER_SECONDS
    bots = {name: p for name, p in procs.items() if name != "worker"}

    def waiting() -> bool:
        return time.monotonic() < deadline and any(p.poll() is None for p in bots.values())

    if not live:
        while waiting():
            time.sleep(0.5)
    else:
        with Live(monitor_view(config, utcnow()), console=console, refresh_per_second=2, transient=True) as view:
            while waiting():
                time.sleep(1)
                view.update(monitor_view(config, utcnow()))
    return [name for name, p in bots.items() if p.poll() is None]


def _stop_processes(procs, stuck: list[str]) -> list[str]:
    """Stop what is still running (the worker; stuck bots) and collect real failures.

    Our own SIGTERM is a normal end, whether the process handled it (exit 0) or was stopped by
    it before it installed its handler (-SIGTERM); a stuck bot and a process that ignores
    SIGTERM are failures, and so is any other exit code.
    """
    failures = [f"{name} was still running {STUCK_AFTER_SECONDS:.0f} s after its chat time" for name in stuck]
    stopped = set()
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            stopped.add(name)
    for name, proc in procs.items():
        try:
            code = proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            failures.append(f"{name} ignored SIGTERM for {STOP_GRACE_SECONDS:.0f} s and was killed")
            continue
        if code != 0 and not (name in stopped and code == -signal.SIGTERM):
            failures.append(f"{name} exited with {code}")
    return failures


def _finish(config, work: Path, failures: list[str], console: Console) -> int:
    now = utcnow()
    snapshot = queries.stats_snapshot(now, config)
    console.rule("The .stats panel, as Saved Messages shows it")
    console.print(telegram_as_text(render_telegram.render_stats(snapshot)), highlight=False)
    console.rule("Keys")
    for table in (stats_view(snapshot), usage_view(queries.usage_report(now, days=1, by="key")),
                  usage_view(queries.usage_report(now, days=1, by="bot"))):
        show(table, console=console)         # fitted to a terminal, complete in a pipe
    chart = work / "usage-chart.png"
    chart.write_bytes(charts.usage_chart(now, days=7))
    calls = UsageEvent.select().count()
    console.print(f"{calls} calls recorded; chart: {chart}; logs and database: {work}")
    for failure in failures:
        console.print(f"[red]{failure}[/] (see {work})")
    return 1 if failures or calls == 0 else 0


def telegram_as_text(message: str) -> str:
    """Telegram HTML as the reader sees it (tags gone, entities decoded)."""
    return html.unescape(re.sub(r"</?[a-zA-Z][^>]*>", "", message))


def cmd_demo(args) -> int:
    return run_demo(seconds=args.seconds, min_messages=args.min_messages, database_url=args.database,
                    workdir=args.dir, live=not args.no_live)


def register(command) -> None:
    sub = command("demo", cmd_demo, "run the product offline: simulator, worker and two bots, then the reports",
                  json=False)
    sub.add_argument("--seconds", type=float, default=20.0, help="how long the bots chat at least (default 20)")
    sub.add_argument("--min-messages", type=int, default=MIN_MESSAGES, metavar="N",
                     help=f"and until each bot has sent N replies, however slow the machine (default {MIN_MESSAGES})")
    sub.add_argument("--database", help="database URL (default: an SQLite file in a temporary folder)")
    sub.add_argument("--dir", help="folder for the database, logs and chart (default: a new temporary one)")
    sub.add_argument("--no-live", action="store_true", help="no live view while it runs")
