"""Calls on their way to the provider, written down before they go (a write-ahead log).

A process killed (kill -9, OOM) after the provider served a call but before the call was
booked or journaled would lose it. So each call is first written here as an estimated
charge (the prompt estimate, outcome "interrupted", with its allowance reservation) under
the call_id it will be booked with, and forgotten once booked or journaled. The next start
of the same bot books what a dead process left here: a call that was booked after all is a
duplicate `call_id` and changes nothing; one that was not is charged as estimated, and its
reservation is settled with it instead of just expiring.

One file per process run, held with flock while the process lives, so a starting process
takes over only files whose owner is gone. A plain write (no fsync) is enough: a killed
process's writes are in the kernel already; only a power cut could lose the last ones.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from shared.core.accounting import CallRecord
from shared.core.journal import call_from_json, call_to_json

log = logging.getLogger("tokenpool.inflight")

COMPACT_LINES = 10_000        # rewrite the file with only the open intents past this many lines


def _prefix(bot: str) -> str:
    return "inflight-" + ("".join(c if c.isalnum() or c in "-_." else "_" for c in bot)[:64] or "bot") + "-"


class InFlight:
    """This process's calls that went out and are not booked (nor journaled) yet."""

    def __init__(self, folder: str | Path, bot: str):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / f"{_prefix(bot)}{uuid.uuid4().hex[:12]}.jsonl"
        self._fd: int | None = None
        self._open: dict[str, bytes] = {}
        self._lines = 0
        self._failed = False

    def open(self, rehearsals: int = 0) -> None:
        """Create and lock this run's file now (the bot's warm-up at start), not at the first
        call (~0.13 ms), and encode a call `rehearsals` times without writing it, so the first
        call's encoding runs specialized (~0.06 ms of its ~0.13). A failure to open is left to
        `intend` to report, where it matters."""
        with contextlib.suppress(OSError):
            self._file()
        sample = CallRecord(key_id=0, bot="warm-up", operation="warm-up", model="warm-up", estimated=True)
        for _ in range(rehearsals):
            _encode(sample)

    def intend(self, call: CallRecord) -> None:
        """Write `call` (the estimated charge) down before it is sent."""
        line = _encode(call)
        try:
            os.write(self._file(), line)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot write in-flight calls to %s (%s): a call cut off by a crash now would "
                            "go unbooked", self.path, exc.strerror or exc)
            self._failed = True
            return
        self._failed = False
        self._open[call.call_id] = line
        self._lines += 1

    def done(self, call_id: str) -> None:
        """The call is booked or journaled: its intent is no longer needed."""
        if self._open.pop(call_id, None) is None or self._fd is None:
            return
        try:
            if not self._open:
                os.ftruncate(self._fd, 0)
                self._lines = 0
            elif self._lines > COMPACT_LINES:
                os.ftruncate(self._fd, 0)
                os.write(self._fd, b"".join(self._open.values()))
                self._lines = len(self._open)
        except OSError as exc:
            log.debug("could not compact %s: %s", self.path, exc)

    def close(self) -> None:
        """A clean stop: no file left behind if nothing is in flight."""
        if self._fd is None:
            return
        if not self._open:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)              # releases the flock
        self._fd = None

    def _file(self) -> int:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self._fd


def _encode(call: CallRecord) -> bytes:
    return (json.dumps(call_to_json(call), separators=(",", ":")) + "\n").encode("utf-8")


def settle_orphans(folder: str | Path, bot: str, book: Callable[[CallRecord], object]) -> int:
    """Book the calls that dead processes of `bot` left in flight (idempotently); returns how many
    files were settled. A file whose owner still runs (its flock is held) is left alone."""
    settled = 0
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return 0
    for path in sorted(folder.glob(f"{_prefix(bot)}*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                                   # its process is alive
            calls = _read(path)
            for call in calls:
                book(call)
            path.unlink(missing_ok=True)
            settled += 1
            if calls:
                log.warning("a process of bot %s died with %d call(s) in flight; booked them as estimated "
                            "charges where they were not booked already", bot, len(calls))
        finally:
            os.close(fd)
    return settled


def _read(path: Path) -> list[CallRecord]:
    calls = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            calls.append(call_from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            log.warning("skipping an unreadable line of %s (a write cut short by the crash)", path)
    return calls
