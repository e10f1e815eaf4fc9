"""Numbers as people type them in commands, parsed strictly: ASCII digits only.

`str.isdigit()` accepts '²' and `int()`/`float()` accept Arabic-Indic digits, underscores
and 5,000-digit strings that later overflow a column or a timedelta; a command must answer
anything of the kind with its usage line, so these return None instead of raising.
"""
from __future__ import annotations

import re

_WHOLE = re.compile(r"-?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[0-9]+(?:[.,][0-9]+)?", re.ASCII)
_SIGNED_DECIMAL = re.compile(r"-?[0-9]+(?:[.,][0-9]+)?", re.ASCII)
_MAX_DIGITS = 30        # longer than any bound a command takes; keeps int()/float() cheap


def whole_number(word: str, low: int, high: int) -> int | None:
    """`word` as an int within [low, high], or None."""
    if len(word) > _MAX_DIGITS or not _WHOLE.fullmatch(word):
        return None
    value = int(word)
    return value if low <= value <= high else None


def decimal_number(word: str, low: float, high: float) -> float | None:
    """`word` (a decimal comma allowed) as a float within [low, high], or None."""
    if len(word) > _MAX_DIGITS or not _DECIMAL.fullmatch(word):
        return None
    value = float(word.replace(",", "."))
    return value if low <= value <= high else None


def is_ascii_number(word: str) -> bool:
    """Whether `word` is a number at all, perhaps out of range (a sign, a decimal comma)."""
    return len(word) <= _MAX_DIGITS and _SIGNED_DECIMAL.fullmatch(word) is not None
