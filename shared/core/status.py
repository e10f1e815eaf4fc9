"""Key status (docs/design.md invariant 3): one pure function of the key row and the time.

Worker, bots, reports and the dashboard all call `key_status`; nobody else decides.
"""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from shared.core import windows


class Status(str, enum.Enum):
    DISABLED = "DISABLED"
    INVALID = "INVALID"
    EXHAUSTED = "EXHAUSTED"
    RATE_LIMITED = "RATE_LIMITED"
    LOW = "LOW"
    FRESH = "FRESH"
    ACTIVE = "ACTIVE"

    def __str__(self) -> str:
        return self.value


ELIGIBLE = frozenset({Status.FRESH, Status.ACTIVE, Status.LOW})
DEFAULT_LOW_THRESHOLD = 500_000


@dataclass(frozen=True)
class WindowUsage:
    """A key's counters as of `now`: zero when the stored window has ended."""
    used: int
    calls: int
    rate_hits: int
    errors: int
    limit: int
    window_start: dt.datetime
    resets_in: dt.timedelta
    quota_exhausted: bool = False   # the provider said insufficient_quota in this window

    @property
    def left(self) -> int:
        return 0 if self.quota_exhausted else max(0, self.limit - self.used)


def window_usage(key, now: dt.datetime) -> WindowUsage:
    """Today's counters of `key` (an ApiKey row or anything with the same attributes)."""
    current = windows.in_current_window(key.window_start, key.window_anchor, now)
    start = windows.window_start(key.window_anchor, now)
    return WindowUsage(
        used=key.used_today if current else 0,
        calls=key.calls_today if current else 0,
        rate_hits=key.rate_hits_today if current else 0,
        errors=key.errors_today if current else 0,
        limit=key.daily_token_limit,
        window_start=start,
        resets_in=windows.resets_in(key.window_anchor, now),
        quota_exhausted=key.exhausted_window == start,
    )


def key_status(key, now: dt.datetime, low_threshold: int = DEFAULT_LOW_THRESHOLD) -> Status:
    """The status of `key` at `now`. Precedence is the order of the checks below.

    A key with nothing used this window is FRESH even when its whole allowance is
    under the LOW threshold (a small key would otherwise never look fresh).
    """
    if key.disabled:
        return Status.DISABLED
    if key.invalid:
        return Status.INVALID
    usage = window_usage(key, now)
    if usage.used >= usage.limit or usage.quota_exhausted:
        return Status.EXHAUSTED
    if key.cooldown_until is not None and now < key.cooldown_until:
        return Status.RATE_LIMITED
    if usage.used == 0:
        return Status.FRESH
    if usage.left < low_threshold:
        return Status.LOW
    return Status.ACTIVE


def is_eligible(key, now: dt.datetime, low_threshold: int = DEFAULT_LOW_THRESHOLD) -> bool:
    return key_status(key, now, low_threshold) in ELIGIBLE


def frees_up_at(key, now: dt.datetime) -> dt.datetime | None:
    """When an ineligible key can be used again (None: only a person can fix it)."""
    if key.disabled or key.invalid:
        return None
    usage = window_usage(key, now)
    if usage.used >= usage.limit or usage.quota_exhausted:
        return usage.window_start + windows.WINDOW
    if key.cooldown_until is not None and now < key.cooldown_until:
        return key.cooldown_until
    return now
