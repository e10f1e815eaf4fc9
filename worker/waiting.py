"""Waiting between ticks: until the tick period is over, a bot asks for an early tick, or a
signal asks us to stop.

On PostgreSQL the wait is a `select()` on the database connection (LISTEN) and on a pipe the
signal handler writes to. Elsewhere it polls the wake marker every `poll_seconds`.
A database that is down never makes the wait fail: it then just sleeps.
"""
from __future__ import annotations

import logging
import os
import select
import time

from shared.core.db import TRANSIENT_ERRORS, listen, take_notifications
from shared.core.worker_nudge import WAKE_CHANNEL, wake_marker

log = logging.getLogger("tokenpool.worker.wakeup")


class Waker:
    def __init__(self, poll_seconds: float = 0.25):
        self.poll_seconds = poll_seconds
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._marker: str | None = None
        self._marker_known = False

    def interrupt(self) -> None:
        """Wake the wait now. Safe to call from a signal handler."""
        try:
            os.write(self._write, b"!")
        except BlockingIOError:          # the pipe is full: a wake-up is pending anyway
            pass

    def wait(self, seconds: float, *, database_ok: bool = True) -> str:
        """Block up to `seconds`. Returns "interrupt", "wakeup" or "timeout"."""
        deadline = time.monotonic() + seconds
        fd, polling = None, False
        if database_ok:
            try:
                fd = listen(WAKE_CHANNEL)
                polling = fd is None
            except TRANSIENT_ERRORS:      # the database just went away: sleep, do not poll it
                pass
        while True:
            if fd is not None:
                notified = self._notified()
                if notified is None:     # the connection broke: sleep out the rest
                    fd = None
                elif notified:
                    return "wakeup"
            if polling:
                moved = self._marker_moved()
                if moved is None:        # the database went away: sleep out the rest
                    polling = False
                elif moved:
                    return "wakeup"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            step = min(remaining, self.poll_seconds) if polling else remaining
            ready, _, _ = select.select([self._read] + ([fd] if fd is not None else []), [], [], step)
            if self._read in ready:
                self._drain()
                return "interrupt"

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)

    def _notified(self) -> bool | None:
        try:
            return take_notifications() > 0
        except TRANSIENT_ERRORS:
            return None

    def _marker_moved(self) -> bool | None:
        try:
            marker = wake_marker()
        except TRANSIENT_ERRORS:
            return None
        moved = self._marker_known and marker != self._marker
        self._marker, self._marker_known = marker, True
        return moved

    def _drain(self) -> None:
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
