"""Logging set-up for every process: one handler on stderr, in journald's format under
systemd ($JOURNAL_STREAM set) and as timestamped lines otherwise; chatty HTTP loggers quieted.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """`<6>tokenpool.worker: message`: journald reads the <priority> prefix and adds the time."""

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        # Continuation lines of a traceback keep the record's priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "aiohttp.access", "pyrogram.session", "pyrogram.connection")


def setup_logging(level: str = "INFO", env: Mapping[str, str] | None = None) -> None:
    """Log to stderr: journald format under systemd ($JOURNAL_STREAM), timestamped lines otherwise."""
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    if env.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # HTTP libraries log every request at INFO; our own per-call line says more.
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
