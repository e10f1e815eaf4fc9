"""The tokens one call used: one value passed from the provider dialect through the
failover loop to the accountant, instead of a positional tuple each reads its own way.

Counts are never negative: a provider's impossible numbers are rejected where they are
read (the dialect) and replaced by an estimate flagged `estimated`; `Usage` itself
clamps as a last guard so nothing negative can reach a counter.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0         # includes cached tokens, as OpenAI reports them
    cached: int = 0
    output: int = 0        # includes reasoning tokens
    reasoning: int = 0

    def __post_init__(self) -> None:
        for name in ("input", "cached", "output", "reasoning"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                object.__setattr__(self, name, max(0, int(value)) if _is_number(value) else 0)

    @property
    def total(self) -> int:
        return self.input + self.output


NO_USAGE = Usage()


def _is_number(value) -> bool:
    try:
        int(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return not isinstance(value, bool)
