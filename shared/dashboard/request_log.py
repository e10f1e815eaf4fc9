"""What the dashboard logs about requests it cannot parse: one line, no traceback, no bytes.

aiohttp logs a malformed request (a NUL in a header, a bad header name, an overlong line)
at ERROR with a traceback whose message quotes the offending line, which may carry the
dashboard token or a session cookie; an unauthenticated client could also flood the log
with them. This filter turns each such record into one warning naming the client, the
status and the kind of error, and nothing the client sent.
"""
from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class ParseErrorFilter(logging.Filter):
    """Rewrites aiohttp's records of unparseable requests (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "dashboard: malformed request from %s answered %s (%s)"
            record.args = (client, exc.code, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_parse_errors() -> None:
    """Install the filter on aiohttp's server logger (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ParseErrorFilter) for f in logger.filters):
        logger.addFilter(ParseErrorFilter())
