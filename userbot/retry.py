"""Telegram calls that survive FloodWait and network trouble.

Telegram answers a client that goes too fast with FloodWait (wait N seconds). Pyrogram
sleeps through short ones itself (`sleep_threshold`); `telegram_call` waits out longer
ones up to a limit, and retries network errors and Telegram's 5xx with backoff. Every
wait is logged. What still fails is raised to the caller.
"""
from __future__ import annotations

import asyncio
import logging

from pyrogram.errors import FloodWait, InternalServerError, ServiceUnavailable

from shared.core.backoff import backoff_delay

log = logging.getLogger("tokenpool.telegram")

NETWORK_ERRORS = (OSError, asyncio.TimeoutError, InternalServerError, ServiceUnavailable)


async def telegram_call(fn, *args, what: str = "telegram call", max_flood_wait: float = 300.0,
                        attempts: int = 5, base_delay: float = 1.0, max_delay: float = 30.0,
                        sleep=asyncio.sleep, **kwargs):
    """`await fn(*args, **kwargs)`, waiting out FloodWaits (up to `max_flood_wait` seconds
    each) and retrying network errors with exponential backoff, `attempts` tries in all."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn(*args, **kwargs)
        except FloodWait as exc:
            wait = flood_wait_seconds(exc)
            if wait > max_flood_wait or attempt == attempts:
                log.error("%s: Telegram asks to wait %d s (FloodWait); giving up", what, wait)
                raise
            log.warning("%s: Telegram asks to wait %d s (FloodWait); waiting", what, wait)
            await sleep(wait + 1)
        except NETWORK_ERRORS as exc:
            if attempt == attempts:
                log.error("%s failed after %d attempts: %s", what, attempts, _describe(exc))
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.warning("%s: %s; retrying in %.0f s", what, _describe(exc), delay)
            await sleep(delay)
    raise AssertionError("unreachable")


def flood_wait_seconds(exc: FloodWait) -> int:
    try:
        return max(0, int(float(getattr(exc, "value", 0) or 0)))
    except (TypeError, ValueError):
        return 0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
