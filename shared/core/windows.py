"""24-hour allowance windows (docs/design.md invariant 2), as pure functions of values.

Window k of a key is [anchor + k*24h, anchor + (k+1)*24h). In "utc-day" mode the
anchor is the Unix epoch, so windows are UTC calendar days. Anyone can compute the
current window from the key row and the clock; nobody has to persist a reset first.
"""
from __future__ import annotations

import datetime as dt

WINDOW = dt.timedelta(hours=24)
EPOCH = dt.datetime(1970, 1, 1)


def anchor_for(reset_mode: str, registered_at: dt.datetime) -> dt.datetime:
    """The anchor a new key gets: its registration second (rolling) or the epoch (utc-day)."""
    if reset_mode == "utc-day":
        return EPOCH
    return registered_at.replace(microsecond=0)


def window_start(anchor: dt.datetime, now: dt.datetime) -> dt.datetime:
    """Start of the window that contains `now`."""
    k = (now - anchor) // WINDOW
    return anchor + k * WINDOW


def window_end(anchor: dt.datetime, now: dt.datetime) -> dt.datetime:
    return window_start(anchor, now) + WINDOW


def resets_in(anchor: dt.datetime, now: dt.datetime) -> dt.timedelta:
    """Time left until the current window ends (always > 0)."""
    return window_end(anchor, now) - now


def in_current_window(stored_start: dt.datetime | None, anchor: dt.datetime, now: dt.datetime) -> bool:
    """Do counters stamped with `stored_start` belong to the window containing `now`?"""
    return stored_start is not None and stored_start == window_start(anchor, now)


def format_duration(delta: dt.timedelta) -> str:
    """'18h 45m', '3m', '0m': the resets-in countdown as people read it."""
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
