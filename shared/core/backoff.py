"""Exponential backoff: the one rule every retry loop waits by.

The n-th consecutive failure waits `base · factor^(n-1)` seconds, never more than `cap`.
Used by the database retries (sync and on the bot's database thread), the worker's tick
retries, Telegram retries and the AI client's server-error retries and 429 cool-downs.
"""
from __future__ import annotations

import math

_MAX_EXPONENT = 60          # 2^60 · any sane base is past every cap; keeps floats finite


def backoff_delay(failures: int, base: float, cap: float, factor: float = 2.0) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 for the first)."""
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    delay = base * factor ** exponent
    return min(delay, cap) if math.isfinite(delay) else cap


class Backoff:
    """Counts consecutive failures and says how long to wait after each."""

    def __init__(self, base: float, cap: float, factor: float = 2.0):
        self.base = base
        self.cap = max(cap, base)
        self.factor = factor
        self.failures = 0

    def failed(self) -> float:
        """Note one more failure; returns the delay before the next attempt."""
        self.failures += 1
        return backoff_delay(self.failures, self.base, self.cap, self.factor)

    def reset(self) -> None:
        self.failures = 0
