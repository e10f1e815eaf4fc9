"""`tokenpool monitor`: a live terminal view of the pool, redrawn every couple of seconds.

Keys with status and usage bars, calls per minute, the newest calls and the health of the
worker and bots, all from the shared report queries. Ctrl-C (SIGINT) or SIGTERM ends it
with exit status 0. A database hiccup shows on screen and the next refresh tries again.
"""
from __future__ import annotations

import signal
import threading

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from shared.core.db import TRANSIENT_ERRORS, database
from shared.core.models import utcnow
from shared.reports.money import money_text
from shared.reports.queries import calls_per_minute, recent_calls, stats_snapshot
from shared.reports.render_terminal import fit_to_width, health_table, keys_table, recent_table


def monitor_view(config, now, *, calls: int = 10) -> Group:
    """One frame of the monitor, as of `now`."""
    snapshot = stats_snapshot(now, config)
    today = snapshot.today
    in_use = snapshot.in_use
    header = Text.assemble(
        ("tokenpool monitor", "bold"), f"  {now:%Y-%m-%d %H:%M:%S} UTC   ",
        ("calls/min ", "bold"), f"{calls_per_minute(now, 1):.0f} (last 1 min), "
                               f"{calls_per_minute(now, 10):.1f} (10-min avg)   ",
        ("today ", "bold"), f"{today.used:,} used, {today.left:,} left, {today.calls:,} calls, "
                            f"{money_text(today.cost_nanousd, today.unpriced_tokens)}   ",
        ("in use ", "bold"), f"#{in_use.number} {in_use.label}" if in_use else "none")
    parts: list[RenderableType] = [header, keys_table(snapshot.keys, bars=True),
                                   recent_table(recent_calls(calls), "Newest calls")]
    parts.append(health_table(snapshot.processes) if snapshot.processes
                 else Text("No worker or bot has reported yet.", style="dim"))
    return Group(*parts)


def run_monitor(config, *, interval: float = 2.0, calls: int = 10, console: Console | None = None) -> int:
    """Redraw every `interval` seconds until SIGINT or SIGTERM; returns the exit status (0)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        console = console or Console()
        with Live(console=console, auto_refresh=False, screen=False, redirect_stderr=False) as live:
            while not stop.is_set():      # fitted each frame: the terminal may have been resized
                live.update(fit_to_width(_frame(config, calls), console), refresh=True)
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _frame(config, calls: int):
    try:
        return monitor_view(config, utcnow(), calls=calls)
    except TRANSIENT_ERRORS as exc:
        try:
            database.close()    # the next frame reconnects
        except TRANSIENT_ERRORS:
            pass
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Text(f"database unavailable ({first}); retrying…", style="bold red")
