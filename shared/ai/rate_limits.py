"""Reading the provider's rate-limit headers: pure functions of header values.

OpenAI answers every call with `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`;
the resets are Go-style durations (`6m0s`, `1s`, `120ms`, `1h2m3.5s`). A 429 may also
carry `retry-after` (seconds or an HTTP date) and `retry-after-ms`. Anything malformed
is ignored, never raised: a provider's odd header must not fail a call.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import functools
import re
from collections.abc import Mapping

from shared.core.accounting import RateLimitSnapshot

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_MAX_SECONDS = 366 * 24 * 3600.0   # beyond a year is nonsense; treat it as unknown


def parse_duration(text: str | None) -> dt.timedelta | None:
    """`"6m0s"` -> 6 minutes; a bare number is seconds; None when it cannot be read."""
    if text is None:
        return None
    seconds = _seconds(text)
    return None if seconds is None else dt.timedelta(seconds=seconds)


@functools.lru_cache(maxsize=512)
def _seconds(text: str) -> float | None:
    """Remembered: a provider sends the same few reset values on every call."""
    text = text.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        seconds = float(text)
    else:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                return None
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text):
            return None
    if seconds > _MAX_SECONDS:
        return None
    return seconds


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def _reset_at(value: str | None, now: dt.datetime) -> dt.datetime | None:
    delta = parse_duration(value)
    return None if delta is None else now + delta


def rate_limit_snapshot(headers: Mapping[str, str], now: dt.datetime) -> RateLimitSnapshot | None:
    """The x-ratelimit-* headers as a snapshot (None when the response carried none)."""
    get = headers.get
    snapshot = RateLimitSnapshot(
        remaining_requests=_int(get("x-ratelimit-remaining-requests")),
        remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
        limit_requests=_int(get("x-ratelimit-limit-requests")),
        limit_tokens=_int(get("x-ratelimit-limit-tokens")),
        reset_requests_at=_reset_at(get("x-ratelimit-reset-requests"), now),
        reset_tokens_at=_reset_at(get("x-ratelimit-reset-tokens"), now),
    )
    return None if snapshot == RateLimitSnapshot() else snapshot


def retry_after(headers: Mapping[str, str], now: dt.datetime) -> dt.datetime | None:
    """When the provider says to try again: retry-after-ms, then retry-after (seconds or date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None and _NUMBER.fullmatch(millis.strip()):
        seconds = float(millis) / 1000
        if seconds <= _MAX_SECONDS:
            return now + dt.timedelta(seconds=seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    delta = parse_duration(value)
    if delta is not None:
        return now + delta
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return max(when, now)


def rate_limit_ends_at(headers: Mapping[str, str], now: dt.datetime) -> dt.datetime | None:
    """When a 429 rate limit ends, if the headers tell: retry-after first, else the reset of
    whichever limit ran out (the later one when both did)."""
    explicit = retry_after(headers, now)
    if explicit is not None:
        return explicit
    snapshot = rate_limit_snapshot(headers, now)
    if snapshot is None:
        return None
    ends = []
    if snapshot.remaining_requests == 0 and snapshot.reset_requests_at is not None:
        ends.append(snapshot.reset_requests_at)
    if snapshot.remaining_tokens == 0 and snapshot.reset_tokens_at is not None:
        ends.append(snapshot.reset_tokens_at)
    return max(ends) if ends else None


def paced_until(snapshot: RateLimitSnapshot | None) -> dt.datetime | None:
    """Per-minute pacing: when a response says no requests (or tokens) remain, the key rests
    until that limit's reset rather than being sent a call that would answer 429."""
    if snapshot is None:
        return None
    ends = [reset for remaining, reset in ((snapshot.remaining_requests, snapshot.reset_requests_at),
                                           (snapshot.remaining_tokens, snapshot.reset_tokens_at))
            if remaining == 0 and reset is not None]
    return max(ends) if ends else None


def format_duration(delta: dt.timedelta) -> str:
    """The provider's own spelling: `120ms`, `1s`, `6m0s`, `1h2m3.5s` (millisecond precision)."""
    millis = max(0, round(delta.total_seconds() * 1000))
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"
