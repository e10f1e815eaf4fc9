"""The worker's life: `while running: tick(); wait()`.

A signal (SIGTERM, SIGINT) sets `running` to false and wakes the wait; the tick under way
finishes, the lease is released and the process exits 0. A database outage never ends the
loop: ticks are retried with a growing delay, and the outage is logged when it starts and
when it ends, not on every attempt. systemd hears READY once the loop runs, a STATUS after
every tick and a WATCHDOG ping on every turn of the loop (the wait never outlasts half the
watchdog period).
"""
from __future__ import annotations

import logging
import signal
import time

from shared.core.backoff import Backoff
from shared.core.db import TRANSIENT_ERRORS, DatabaseUnavailable, drop_connection, first_line
from shared.core.schema import SchemaError
from shared.core.systemd import Notifier
from worker.tick import Ticker, TickReport
from worker.waiting import Waker

log = logging.getLogger("tokenpool.worker")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 78      # 78: EX_CONFIG; the unit does not restart on it
MAX_BACKOFF_SECONDS = 30.0


class Trouble:
    """Whether ticks are failing, and how long to wait before the next attempt.

    Logs once when a kind of failure starts and once when ticks succeed again.
    """

    def __init__(self, base_seconds: float, max_seconds: float = MAX_BACKOFF_SECONDS):
        self.backoff = Backoff(base_seconds, max_seconds)
        self.since: float | None = None
        self.kind = ""

    @property
    def failing(self) -> bool:
        return self.backoff.failures > 0

    def failed(self, exc: BaseException) -> float:
        """Note a failed tick; returns the delay before the next one."""
        outage = isinstance(exc, TRANSIENT_ERRORS + (DatabaseUnavailable,))
        kind = "outage" if outage else f"{type(exc).__name__}: {exc}"
        if kind != self.kind:
            if outage:
                log.warning("database unavailable (%s); retrying with backoff", first_line(exc))
            else:
                log.error("tick failed; retrying with backoff", exc_info=exc)
            self.kind = kind
        if self.since is None:
            self.since = time.monotonic()
        return self.backoff.failed()

    def succeeded(self) -> None:
        if self.backoff.failures and self.since is not None:
            log.info("%s after %.1f s and %d failed tick(s)",
                     "database reachable again" if self.kind == "outage" else "ticks succeed again",
                     time.monotonic() - self.since, self.backoff.failures)
        self.backoff.reset()
        self.since, self.kind = None, ""


class WorkerLoop:
    def __init__(self, ticker: Ticker, *, tick_seconds: float, notifier: Notifier | None = None,
                 waker: Waker | None = None, once: bool = False):
        self.ticker = ticker
        self.tick_seconds = tick_seconds
        self.notifier = notifier or Notifier()
        self.waker = waker or Waker()
        self.once = once
        self.running = True
        self.trouble = Trouble(base_seconds=min(tick_seconds, 1.0))
        self.last: TickReport | None = None

    def stop(self, signum=None, _frame=None) -> None:
        """Finish the tick under way, then exit. Installed as the SIGTERM / SIGINT handler."""
        if signum is not None and self.running:
            log.info("received %s: finishing the current tick", signal.Signals(signum).name)
        self.running = False
        self.waker.interrupt()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        ready = False
        code = EXIT_OK
        try:
            while self.running:
                delay, ok = self.tick()
                if not ready:
                    self.notifier.ready(self._status())
                    ready = True
                self.notifier.watchdog()
                if self.once:
                    code = EXIT_OK if ok else EXIT_FAILED
                    break
                self.wait(delay)
        except SchemaError as exc:
            log.error("%s", exc)
            code = EXIT_CONFIG
        finally:
            self.shut_down()
        return code

    def tick(self) -> tuple[float, bool]:
        """One tick, with failures contained. Returns (seconds to wait, succeeded)."""
        try:
            self.last = self.ticker.tick()
        except SchemaError:
            raise
        except Exception as exc:      # noqa: BLE001 -- the loop outlives any one tick
            delay = self.trouble.failed(exc)
            self.ticker.forget()
            drop_connection()
            self.notifier.status(f"retrying in {delay:.0f} s: {first_line(exc)}")
            return delay, False
        if self.trouble.failing:
            self.ticker.forget()      # the database may have changed under us while we could not see it
        self.trouble.succeeded()
        self.notifier.status(self._status())
        log.debug("tick: %s in %.1f ms", self.last.summary(), self.last.seconds * 1000)
        return self.tick_seconds, True

    def wait(self, seconds: float) -> None:
        if self.notifier.watchdog_seconds:
            seconds = min(seconds, self.notifier.watchdog_seconds / 2)
        self.waker.wait(seconds, database_ok=not self.trouble.failing)

    def shut_down(self) -> None:
        self.notifier.stopping("releasing the lease")
        try:
            if self.ticker.release():
                log.info("released the lease")
        except Exception as exc:     # noqa: BLE001 -- the lease simply expires
            log.warning("could not release the lease (%s); it expires by itself", first_line(exc))
        try:
            self.ticker.sign_off(ephemeral=not self.ticker.config.worker.name)
        except Exception as exc:     # noqa: BLE001 -- the heartbeat simply goes stale
            log.warning("could not record the clean stop (%s)", first_line(exc))
        drop_connection()
        self.waker.close()
        self.notifier.close()

    def _status(self) -> str:
        return self.last.summary() if self.last else "starting; waiting for the database"
