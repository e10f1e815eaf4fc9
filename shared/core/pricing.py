"""Cost of a call, exactly: Decimal USD from genai-prices (bundled data, offline) or a
`[pricing.overrides]` entry, stored as whole nano-dollars (1e-9 USD)."""
from __future__ import annotations

import logging
from decimal import ROUND_HALF_EVEN, Decimal

from shared.core.config import ModelPrice, PricingConfig

log = logging.getLogger("tokenpool.pricing")

NANO = Decimal("1e9")
MILLION = Decimal(1_000_000)


def usd_to_nano(usd: Decimal) -> int:
    return int((usd * NANO).to_integral_value(rounding=ROUND_HALF_EVEN))


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def format_usd(nano: int) -> str:
    """'$0.0123' for small sums, '$12.34' for large ones."""
    usd = nano_to_usd(nano)
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.4f}"


class Pricer:
    """Prices calls; remembers which models it could not price so it warns once per model."""

    def __init__(self, config: PricingConfig | None = None):
        self.overrides = dict(config.overrides) if config else {}
        self._unknown: set[str] = set()
        self._prices = _price_data()

    def cost_nanousd(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> int:
        """Cost in nano-USD; input_tokens includes cached_tokens, as OpenAI reports them."""
        usd = self.cost_usd(model, input_tokens, cached_tokens, output_tokens)
        return 0 if usd is None else usd_to_nano(usd)

    def cost_usd(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal | None:
        if input_tokens == 0 and output_tokens == 0:
            return Decimal(0)
        override = self.overrides.get(model)
        if override is not None:
            return _override_cost(override, input_tokens, cached_tokens, output_tokens)
        if model in self._unknown:
            return None
        try:
            usage = self._prices.Usage(input_tokens=input_tokens, cache_read_tokens=cached_tokens,
                                       output_tokens=output_tokens)
            try:
                return self._prices.calc_price(usage, model, provider_id="openai").total_price
            except LookupError:
                return self._prices.calc_price(usage, model).total_price
        except LookupError:
            self._unknown.add(model)
            log.warning("no price known for model %r: its calls are counted at $0 "
                        "(add [pricing.overrides.%s] to config)", model, model)
            return None
        except ValueError as exc:   # genai-prices refuses token counts it finds impossible
            log.warning("cannot price %r with %d/%d/%d tokens: %s", model, input_tokens, cached_tokens,
                        output_tokens, exc)
            return None


def _price_data():
    """genai-prices and its bundled data, about 16 MB resident: loaded by the processes that
    price calls (a Pricer), not by those that only format money (the worker, most of the CLI)."""
    import genai_prices
    return genai_prices


def _override_cost(price: ModelPrice, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
    cached_rate = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    uncached = max(0, input_tokens - cached_tokens)
    return (uncached * price.input_per_mtok + cached_tokens * cached_rate
            + output_tokens * price.output_per_mtok) / MILLION
