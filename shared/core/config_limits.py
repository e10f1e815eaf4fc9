"""What each setting may hold, declared on the config field itself and checked at load.

A setting is declared with `setting(default, ...)`, which stores a `Limit` in the field's
metadata; the loader checks every value against its field's limit, so validation cannot
drift from the fields. The bounds are what the database and the clock can hold: integers
within a signed 64-bit column (with room for sums), finite floats and durations that
`datetime.timedelta` and asyncio accept, strings within their columns and free of NUL
(which PostgreSQL refuses).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Token counts: a thousand keys at this limit still sum within a signed 64-bit column.
TOKENS_MAX = 10**15
# USD per million tokens: the cost of a 10-million-token call stays within a 64-bit count of nano-USD.
PRICE_MAX = Decimal(100_000)
# USD budgets: within a 64-bit count of nano-USD.
USD_MAX = Decimal(1_000_000_000)
HOUR, DAY = 3600, 86400
YEAR_DAYS = 366
# Any string a database column does not hold (e.g. prompts, secrets) still has a bound.
TEXT_MAX = 100_000
# Column widths (shared.core.models) the settings are written into.
LABEL_COLUMN = 100
MODEL_COLUMN = 100
BOT_COLUMN = 64
BASE_URL_COLUMN = 500
WORKER_NAME_MAX = 64      # the lease holder column (128) also takes "@host:pid"

LIMIT = "limit"


@dataclass(frozen=True)
class Limit:
    """Bounds of one setting. `above` makes the lower bound exclusive (e.g. "positive")."""
    low: float | Decimal | None = None
    high: float | Decimal | None = None
    above: bool = False
    choices: tuple[str, ...] = ()
    ignore_case: bool = False
    max_length: int | None = None
    non_empty: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is refused (a phrase for "'key' must be ..."), or None when it fits."""
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, (int, float, Decimal)):
            return self._number_problem(value)
        if isinstance(value, str):
            return self._string_problem(value)
        return None

    def _number_problem(self, value: float | Decimal) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        if isinstance(value, Decimal) and not value.is_finite():
            return "a finite number"
        if isinstance(value, int) and self.high is None and not -2**63 <= value < 2**63:
            return "within a signed 64-bit integer"
        low_ok = self.low is None or (value > self.low if self.above else value >= self.low)
        high_ok = self.high is None or value <= self.high
        if low_ok and high_ok:
            return None
        return self.describe_range()

    def describe_range(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.above and self.low == 0:
            return "positive" if high is None else f"positive and at most {high}"
        if low is not None and high is not None:
            return f"more than {low} and at most {high}" if self.above else f"between {low} and {high}"
        if low is not None:
            return f"more than {low}" if self.above else f"at least {low}"
        return f"at most {high}"

    def _string_problem(self, value: str) -> str | None:
        if "\x00" in value:
            return "text without NUL characters"
        if self.choices:
            folded = value.upper() if self.ignore_case else value
            if folded not in self.choices:
                return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.non_empty and not value.strip():
            return "non-empty text"
        limit = self.max_length if self.max_length is not None else TEXT_MAX
        if len(value) > limit:
            return f"at most {limit:,} characters long (it is {len(value):,})"
        return None


def _number(value: float | Decimal | None) -> str | None:
    """Bounds as people read them: 65535, 3600, 1,000,000,000,000,000."""
    if value is None:
        return None
    return f"{value:,}" if abs(float(value)) >= 1_000_000 else f"{value}"


def setting(default: Any, **limit: Any) -> Any:
    """A config field with its default and its `Limit` (see `Limit` for the keywords)."""
    return dataclasses.field(default=default, metadata={LIMIT: Limit(**limit)})


def secret_setting(default: str = "", **limit: Any) -> Any:
    """Like `setting`, for a value never shown in a repr."""
    return dataclasses.field(default=default, repr=False, metadata={LIMIT: Limit(**limit)})


def list_setting(**limit: Any) -> Any:
    """A list setting (empty by default) whose every item obeys the `Limit`."""
    return dataclasses.field(default_factory=list, metadata={LIMIT: Limit(**limit)})


def limit_of(field: dataclasses.Field) -> Limit:
    """The field's declared limit; a field without one gets the type-wide bounds only."""
    return field.metadata.get(LIMIT, Limit())
