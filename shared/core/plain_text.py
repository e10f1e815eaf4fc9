"""Text as every backend and JSON encoder accepts it.

PostgreSQL refuses NUL in text; no driver (nor the AI provider's JSON) takes lone UTF-16
surrogates, which a Telegram message or name can carry. Both are dropped where text comes
in (the Telegram edge) and again where it is written (the text columns), so a message
holding them is stored and answered instead of failing in the handler.
"""
from __future__ import annotations

import re

import peewee as pw

_REFUSED = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` without NUL characters and lone surrogates."""
    return _REFUSED.sub("", text)


class PlainTextField(pw.TextField):
    """A TEXT column that drops what a backend refuses (see `storable`)."""

    def db_value(self, value):
        return super().db_value(storable(value) if isinstance(value, str) else value)


class PlainCharField(pw.CharField):
    """A VARCHAR column that drops what a backend refuses (see `storable`)."""

    def db_value(self, value):
        return super().db_value(storable(value) if isinstance(value, str) else value)
