"""The bot's database thread and its retry policy, in one object passed to whoever needs it.

Peewee connections are per thread and SQLite wants one writer per connection, so a bot
process does every database call (recording, key picks, commands, heartbeats) on ONE
thread, in the order the calls were made: a failure recorded before a pick is seen by
that pick. Transient errors (the server away, SQLite locked past its busy timeout) are
retried here and only here, with `backoff`; the wait happens on the event loop, not on
the thread, so one call's retries never hold up the others. The outage is logged when it
starts and when it ends, not per call.

The thread is a plain one fed by a queue, and it hands each result straight to the
waiting event loop: a round trip costs about half of `loop.run_in_executor`'s (whose
concurrent.futures and future-chaining bookkeeping cost more than a short SQLite query).

On SQLite, even that round trip (waking the thread, then the loop: 0.1-0.4 ms, more on a
busy machine) costs more than the work of a tracked call's key pick, reservation (when the
call holds against an allowance, a budget or its key's limit) or booking. So those go
through `run_inline`: on the loop's own thread, on a connection that never waits for a
lock (shared.core.db.inline_twin), and only while nothing waits on the thread, so the
process's database calls still happen in the order they were made. Whatever would wait
(another process holds the write lock) or fails is handed to the thread, as before.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import weakref

import peewee

from shared.core.backoff import backoff_delay
from shared.core.db import (
    TRANSIENT_ERRORS,
    DatabaseUnavailable,
    database,
    drop_connection,
    first_line,
    inline_twin,
    lock_wait_timed_out,
)

log = logging.getLogger("tokenpool.db")

CHECKPOINT_EVERY = 1000       # inline runs between the WAL checkpoints asked of the thread


class DatabaseExecutor:
    """Runs blocking database functions on one thread, retrying transient errors."""

    def __init__(self, *, attempts: int = 8, base_delay: float = 0.1, max_delay: float = 5.0,
                 name: str = "database", inline: bool = True):
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._closed = False
        self._pending = 0               # submitted to the thread, not yet answered
        self._inline = inline           # may run_inline use the loop's thread (SQLite only)?
        self._twin: tuple[peewee.Database, peewee.SqliteDatabase] | None = None
        self._inline_runs = 0

    @property
    def unavailable(self) -> bool:
        """True while the last database call failed with a transient error."""
        return self._down_since is not None

    async def run_once(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` on the database thread, once, no retry. A call cancelled
        before the thread takes it up is not run; one already running runs to its end."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit((future, loop, fn, args, kwargs))
        self._pending += 1                  # less one when the thread answers (`_answer`)
        return await future

    async def run_inline(self, fn, *args, what: str | None = None, retry_locked: bool = True,
                         fallback: bool = True, **kwargs):
        """`fn(*args, db=..., **kwargs)`, a short piece of work that takes its connection as
        `db`: on SQLite, done at once on the loop's thread when nothing waits on the database
        thread (see the module docstring); otherwise, or when that attempt meets any database
        error, done by `run` on the thread with `db=None` (the thread's own connection), or
        not at all (None) with `fallback=False`."""
        twin = self._inline_connection() if self._pending == 0 and self._down_since is None else None
        if twin is not None:
            try:
                result = fn(*args, db=twin, **kwargs)
            except (peewee.PeeweeException, *TRANSIENT_ERRORS):
                twin.close()        # whatever it was (a lock, a full disk): the thread's turn
            else:
                self._inline_runs += 1
                if self._inline_runs % CHECKPOINT_EVERY == 0:
                    self._checkpoint_soon()
                return result
        if not fallback:
            return None
        return await self.run(fn, *args, what=what, retry_locked=retry_locked, db=None, **kwargs)

    def _inline_connection(self) -> peewee.SqliteDatabase | None:
        if not self._inline or self._closed:
            return None
        target = database.obj
        if target is None:
            return None                     # not opened yet: the thread's turn, this time
        if self._twin is None or self._twin[0] is not target:
            if self._twin is not None:
                self._twin[1].close()
            twin = inline_twin(target)
            if twin is None:
                self._inline = False        # not SQLite: the thread does everything
                return None
            self._twin = (target, twin)
        return self._twin[1]

    def _checkpoint_soon(self) -> None:
        """The inline connection never checkpoints (see inline_twin): the thread's does, now and then."""
        async def checkpoint():
            try:
                await self.run_once(_checkpoint)
            except Exception as exc:  # noqa: BLE001 -- the next one, or another connection, checkpoints
                log.debug("WAL checkpoint skipped: %s", exc)
        task = asyncio.ensure_future(checkpoint())
        _checkpoints.add(task)
        task.add_done_callback(_checkpoints.discard)

    def _submit(self, item) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the database thread is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"{self._name}_0", daemon=True)
                self._thread.start()
                _open_executors.add(self)
            self._queue.put(item)

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            future, loop, fn, args, kwargs = item
            if future.cancelled():      # (read across threads: at worst a cancelled call still runs)
                self._deliver(loop, future, None, None)
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller, as an executor would
                self._deliver(loop, future, None, exc)
            else:
                self._deliver(loop, future, result, None)
            del item, future, fn, args, kwargs

    def _deliver(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, result, exc) -> None:
        try:
            loop.call_soon_threadsafe(self._answer, future, result, exc)
        except RuntimeError:        # the loop is closed: nobody waits for the answer any more
            pass

    def _answer(self, future: asyncio.Future, result, exc: BaseException | None) -> None:
        """On the loop's thread: the thread has finished one submitted call."""
        self._pending -= 1
        if future.done():           # cancelled meanwhile
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

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
        """Stop the thread once what was submitted has run (waits for it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._twin is not None:
            self._twin[1].close()       # (peewee closes only the calling thread's connection)


_checkpoints: set[asyncio.Future] = set()      # running checkpoint tasks (kept from the GC)


def _checkpoint() -> None:
    # Its row read to the end: a statement left in progress would make the connection's next COMMIT fail.
    database.obj.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

# Like concurrent.futures' threads: at interpreter exit, what was submitted is run first.
_open_executors: weakref.WeakSet[DatabaseExecutor] = weakref.WeakSet()


def _close_open_executors() -> None:
    for executor in list(_open_executors):
        executor.close()


getattr(threading, "_register_atexit", lambda fn: None)(_close_open_executors)
