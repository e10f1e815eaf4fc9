"""Money as people read it: a cost, or "unpriced" with the tokens of models that have no
known price — never $0 for them, which would read as free.

Every report shows a cost through `money_text` (text) or `money_json` (data), and adds
`pricing_hint` when some of its tokens were unpriced.
"""
from __future__ import annotations

from shared.core.pricing import format_usd, nano_to_usd, override_hint


def usd(nano: int) -> str:
    """Exact decimal USD, as a string (JSON numbers would be read as floats)."""
    return format(nano_to_usd(nano).normalize(), "f")


def money_text(nanousd: int, unpriced_tokens: int = 0) -> str:
    """'$0.0123'; 'unpriced (1,200 tokens)'; or '$0.0123 + unpriced (1,200 tokens)'."""
    if unpriced_tokens <= 0:
        return format_usd(nanousd)
    unpriced = f"unpriced ({unpriced_tokens:,} tokens)"
    return unpriced if nanousd == 0 else f"{format_usd(nanousd)} + {unpriced}"


def money_json(nanousd: int, unpriced_tokens: int = 0, prefix: str = "cost") -> dict:
    """`cost_nanousd`/`cost_usd` (null when every token was unpriced: unknown, not free),
    the `unpriced` flag and `unpriced_tokens`; with prefix "lifetime_cost", `lifetime_…`."""
    unknown = unpriced_tokens > 0 and nanousd == 0
    flag = prefix.removesuffix("cost") + "unpriced"
    return {f"{prefix}_nanousd": None if unknown else nanousd, f"{prefix}_usd": None if unknown else usd(nanousd),
            flag: unpriced_tokens > 0, f"{flag}_tokens": max(0, unpriced_tokens)}


def pricing_hint(models: list[str]) -> str:
    """One line naming the unpriced models and the `[pricing]` override to add ('' for none)."""
    if not models:
        return ""
    shown = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
    return f"unpriced: no price known for {shown}; {override_hint(models[0])}"
