"""A durable local journal of calls the provider served but the database could not book.

When the database is down, full, read-only or locked past every retry, a call that was
already answered (and billed) must not vanish: it is appended here (one JSON line, flushed
and fsynced before the caller hears "recorded") and replayed, oldest first, once the
database takes writes again. Replay is idempotent: `record_call` ignores a `call_id` it has
already booked, so a crash between booking and forgetting the line doubles nothing.

The file holds no secret (key ids, token counts, labels of operations) and is created
owner-only (0600). One file per bot name, in the data directory.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.core.accounting import CallRecord, JournalUnwritable, Outcome, RateLimitSnapshot
from shared.core.allowances import Hold

__all__ = ["CallJournal", "JournalUnwritable", "call_from_json", "call_to_json", "journal_path"]

log = logging.getLogger("tokenpool.journal")


def journal_path(data_dir: str | Path, bot: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in bot)[:64] or "bot"
    return Path(data_dir).expanduser() / f"unbooked-{safe}.jsonl"


class CallJournal:
    """Unbooked calls of one process, kept on disk until the database has them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, call: CallRecord) -> None:
        """Keep `call` durably, or raise JournalUnwritable (disk full, read-only, …)."""
        line = json.dumps(call_to_json(call), separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    # A line cut short by a crash mid-write would swallow this one (unreadable
                    # together, both skipped at replay): start on a line of its own.
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = "\n" + line
                    os.write(fd, line.encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise JournalUnwritable(f"cannot write the call journal {self.path}: {exc.strerror or exc}") from exc

    def pending(self) -> list[CallRecord]:
        with self._lock:
            return self._read()

    def __len__(self) -> int:
        return len(self.pending())

    def replay(self, book: Callable[[CallRecord], object]) -> int:
        """Book every journaled call with `book` (idempotent per call_id), oldest first, and
        forget those booked. Stops at the first failure (the rest stay). Returns how many."""
        with self._lock:
            calls = self._read()
            booked = 0
            try:
                for call in calls:
                    book(call)
                    booked += 1
            finally:
                if booked or not calls:          # (an empty file: a first write that found the disk full)
                    self._rewrite(calls[booked:])
        if booked:
            log.info("booked %d call(s) from the local journal %s", booked, self.path)
        return booked

    def _read(self) -> list[CallRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        calls = []
        for line in text.splitlines():
            try:
                calls.append(call_from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError):
                log.warning("skipping an unreadable line of the call journal %s (a write cut short?)", self.path)
        return calls

    def _rewrite(self, calls: list[CallRecord]) -> None:
        if not calls:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(json.dumps(call_to_json(c), separators=(",", ":")) + "\n" for c in calls).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)


def call_to_json(call: CallRecord) -> dict:
    data = dataclasses.asdict(call)
    data["outcome"] = Outcome(call.outcome).value
    for name in ("at", "cooldown_until"):
        data[name] = data[name].isoformat() if data[name] else None
    if call.rate_limits is not None:
        data["rate_limits"] = {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                               for k, v in dataclasses.asdict(call.rate_limits).items()}
    if call.hold is not None:
        data["hold"] = {"hold_id": call.hold.hold_id, "on_key": call.hold.on_key,
                        "entries": [[allowance_id, start.isoformat()] for allowance_id, start in call.hold.entries]}
    return data


def call_from_json(data: dict) -> CallRecord:
    data = dict(data)
    data["outcome"] = Outcome(data["outcome"])
    for name in ("at", "cooldown_until"):
        data[name] = dt.datetime.fromisoformat(data[name]) if data.get(name) else None
    if data["at"] is None:
        raise ValueError("a journaled call without its time")
    limits = data.get("rate_limits")
    if limits is not None:
        fields: dict[str, Any] = {k: (dt.datetime.fromisoformat(v) if k.startswith("reset_") and v else v)
                                  for k, v in limits.items()}
        data["rate_limits"] = RateLimitSnapshot(**fields)
    hold = data.get("hold")
    if hold is not None:
        data["hold"] = Hold(hold["hold_id"], tuple((int(a), dt.datetime.fromisoformat(start))
                                                   for a, start in hold["entries"]), bool(hold.get("on_key")))
    return CallRecord(**data)
