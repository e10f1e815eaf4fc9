"""Living under systemd: sd_notify (READY / STATUS / WATCHDOG / STOPPING) over
$NOTIFY_SOCKET. Outside systemd all of it is a no-op. (Log lines journald understands are
set up by shared/core/logs.py.)

The notify protocol is one datagram of `NAME=value` lines to a Unix socket; the standard
library's `socket` speaks it, so no extra dependency is needed.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("tokenpool.systemd")


class Notifier:
    """Tells systemd how the service is doing (`Type=notify`, `WatchdogSec=`)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):                # abstract namespace
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_seconds = _watchdog_seconds(env)
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never wait: a full queue (systemd busy or gone) must not freeze the caller's loop.
            self._socket.sendto("\n".join(lines).encode("utf-8"), socket.MSG_DONTWAIT, self.address)
            return True
        except OSError as exc:   # systemd went away or the socket is wrong: keep working regardless
            log.debug("sd_notify failed: %s", exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1") if self.watchdog_seconds else False

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog period systemd expects pings within (None: no watchdog for us)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000

