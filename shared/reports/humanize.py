"""Numbers and durations as people read them in reports: 2.5M, 99.8%, 12s, 2h 5m."""
from __future__ import annotations

import datetime as dt

from shared.core.windows import format_duration


def compact(n: int) -> str:
    """2_500_000 -> '2.5M', 10_000_000 -> '10M', 500_000 -> '500K', 999 -> '999'."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if abs(n) >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def percent(rate: float | None) -> str:
    """0.998 -> '99.8%'; None (no calls) -> '–'."""
    return "–" if rate is None else f"{rate * 100:.1f}%"


def ago(delta: dt.timedelta) -> str:
    """'12s' under a minute, else like the resets-in countdown ('3m', '2h 5m')."""
    seconds = int(delta.total_seconds())
    return f"{seconds}s" if seconds < 60 else format_duration(delta)
