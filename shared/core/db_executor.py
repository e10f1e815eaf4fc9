"""The bot's database thread and its retry policy, in one object passed to whoever needs it.

Peewee connections are per thread and SQLite wants one writer per connection, so a bot
process does every database call (recording, key picks, commands, heartbeats) on ONE
thread, in the order the calls were made: a failure recorded before a pick is seen by
that pick. Transient errors (the server away, SQLite locked past its busy timeout) are
retried here and only here, with `backoff`; the wait happens on the event loop, not on
the thread, so one call's retries never hold up the others. The outage is logged when it
starts and when it ends, not per call.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time

from shared.core.backoff import backoff_delay
from shared.core.db import TRANSIENT_ERRORS, DatabaseUnavailable, drop_connection, first_line, lock_wait_timed_out

log = logging.getLogger("tokenpool.db")


class DatabaseExecutor:
    """Runs blocking database functions on one thread, retrying transient errors."""

    def __init__(self, *, attempts: int = 8, base_delay: float = 0.1, max_delay: float = 5.0,
                 name: str = "database"):
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._down_since: float | None = None
        self._closed = False

    @property
    def unavailable(self) -> bool:
        """True while the last database call failed with a transient error."""
        return self._down_since is not None

    async def run_once(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` on the database thread, once, no retry."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run(self, fn, *args, what: str | None = None, attempts: int | None = None,
                  retry_locked: bool = True, **kwargs):
        """`fn(*args, **kwargs)` on the database thread; transient errors are retried with
        backoff, and after the last attempt raised as DatabaseUnavailable. `retry_locked=False`:
        a lock wait that timed out (a frozen writer holds the lock) is not retried, for callers
        that have somewhere else to put their write (the call journal)."""
        what = what or str(getattr(fn, "__name__", "database call"))
        attempts = attempts or self.attempts
        for attempt in range(1, attempts + 1):
            try:
                result = await self.run_once(fn, *args, **kwargs)
            except TRANSIENT_ERRORS as exc:
                await self.run_once(drop_connection)    # a restarted server is reconnected to
                self._note_down(what, exc)
                if not retry_locked and lock_wait_timed_out(exc):
                    raise DatabaseUnavailable(f"{what}: the database stayed locked ({first_line(exc)})") from exc
                if attempt == attempts:
                    log.error("%s failed after %d attempts: %s", what, attempts, first_line(exc))
                    raise DatabaseUnavailable(f"{what}: database unavailable ({first_line(exc)})") from exc
                await asyncio.sleep(backoff_delay(attempt, self.base_delay, self.max_delay))
            else:
                self._note_up()
                return result
        raise AssertionError("unreachable")

    def _note_down(self, what: str, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s: database unavailable (%s); retrying", what, first_line(exc))

    def _note_up(self) -> None:
        if self._down_since is not None:
            log.info("database reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._executor.shutdown(wait=True)
