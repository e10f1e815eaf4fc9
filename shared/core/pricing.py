"""Cost of a call, exactly: Decimal USD from genai-prices (bundled data, offline) or a
`[pricing.overrides]` entry, stored as whole nano-dollars (1e-9 USD)."""
from __future__ import annotations

import datetime as dt
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


def override_hint(model: str) -> str:
    """The config lines that price `model`, as one line."""
    return f'add [pricing.overrides."{model}"] with input_per_mtok and output_per_mtok to the config'


class Pricer:
    """Prices calls; remembers which models it could not price so it warns once per model.

    Finding a model in genai-prices and computing with Decimals cost ~100 µs a call, a third
    of recording one. So each model is looked up once, and for the usual price shape (flat
    rates per million input, cached-input and output tokens) the rates are kept as integers
    and the cost is computed in integers, rounded as `usd_to_nano` rounds: the same result.
    Prices that start on a date are honoured: the rates are re-derived whenever genai-prices
    picks another price object for the current time.
    """

    def __init__(self, config: PricingConfig | None = None, *, out_of_process: bool = False):
        self.overrides = dict(config.overrides) if config else {}
        self._unknown: set[str] = set()
        self._loaded = None                                  # genai_prices, once needed here
        # out_of_process (the bot): genai-prices' data (~4 MB resident, never given back once
        # loaded) stays out of this process. A short-lived `python -m shared.core.pricing`
        # finds each model once and sends back its flat rates as integers; only a model
        # with another price shape (tiers, time-of-day or dated prices) loads the data here.
        self.out_of_process = out_of_process
        self._fixed: dict[str, _Rates | None] = {}           # model -> rates found by the helper (None: unknown)
        self._models: dict[str, object] = {}                 # model -> genai-prices ModelInfo
        self._rates: dict[str, tuple[object, _Rates | None]] = {}   # model -> (price object, its rates)
        self._override_rates = {model: _Rates.of(price.input_per_mtok, price.cached_input_per_mtok,
                                                 price.output_per_mtok)
                                for model, price in self.overrides.items()}

    def cost_nanousd(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> int:
        """Cost in nano-USD (0 when unpriced); input_tokens includes cached_tokens, as OpenAI reports them."""
        return self.price(model, input_tokens, cached_tokens, output_tokens) or 0

    def price(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> int | None:
        """Cost in nano-USD, or None when no price is known for `model` (shown as "unpriced")."""
        if 0 <= cached_tokens <= input_tokens and output_tokens >= 0:
            if model not in self.overrides and not self._known(model):
                return None if input_tokens or output_tokens else 0
            rates = self._override_rates[model] if model in self.overrides else self._genai_rates(model)
            if rates is not None:
                return rates.nanousd(input_tokens, cached_tokens, output_tokens)
        usd = self.cost_usd(model, input_tokens, cached_tokens, output_tokens)
        return None if usd is None else usd_to_nano(usd)

    def is_priced(self, model: str) -> bool:
        """Whether a price is known for `model` (an override or genai-prices)."""
        return model in self.overrides or self._known(model)

    def cost_usd(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal | None:
        if input_tokens == 0 and output_tokens == 0:
            return Decimal(0)
        override = self.overrides.get(model)
        if override is not None:
            return _override_cost(override, input_tokens, cached_tokens, output_tokens)
        if not self._known(model):
            return None
        fixed = self._fixed.get(model)
        if fixed is not None and 0 <= cached_tokens <= input_tokens and output_tokens >= 0:
            return fixed.usd(input_tokens, cached_tokens, output_tokens)
        info = self._model_info(model)
        if info is None:
            return None
        try:
            usage = self._prices.Usage(input_tokens=input_tokens, cache_read_tokens=cached_tokens,
                                       output_tokens=output_tokens)
            return info.get_prices(_now()).calc_price(usage)["total_price"]
        except ValueError as exc:   # genai-prices refuses token counts it finds impossible
            log.warning("cannot price %r with %d/%d/%d tokens: %s", model, input_tokens, cached_tokens,
                        output_tokens, exc)
            return None

    @property
    def _prices(self):
        if self._loaded is None:
            self._loaded = _price_data()
        return self._loaded

    def prefetch(self, models) -> None:
        """Find these models' prices now (at start), not at their first call."""
        wanted = [m for m in dict.fromkeys(models) if m and m not in self.overrides and m not in self._fixed
                  and m not in self._models and m not in self._unknown]
        if self.out_of_process and wanted:
            self._fixed.update({m: r for m, r in _rates_from_helper(wanted).items() if not isinstance(r, str)})
        for model in wanted:
            if model not in self._fixed:
                self._model_info(model)         # genai-prices, here

    def _known(self, model: str) -> bool:
        """Whether genai-prices knows `model` (asking the helper once, out of process)."""
        if self.out_of_process:
            self.prefetch([model])
            if model in self._fixed:
                if self._fixed[model] is None:
                    self._note_unknown(model)
                    return False
                return True
        return self._model_info(model) is not None

    def _model_info(self, model: str):
        """genai-prices' entry for `model` (an OpenAI one first), or None when it has none."""
        info = self._models.get(model)
        if info is None and model not in self._unknown:
            snapshot = self._prices.data_snapshot.get_snapshot()
            try:
                info = snapshot.find_provider_model(model, None, "openai", None)[1]
            except LookupError:
                try:
                    info = snapshot.find_provider_model(model, None, None, None)[1]
                except LookupError:
                    self._note_unknown(model)
                    return None
            self._models[model] = info
        return info

    def _note_unknown(self, model: str) -> None:
        if model not in self._unknown:
            self._unknown.add(model)
            log.warning("no price known for model %r: its calls are shown as unpriced "
                        "(%s)", model, override_hint(model))

    def _genai_rates(self, model: str) -> _Rates | None:
        fixed = self._fixed.get(model)
        if fixed is not None:
            return fixed
        info = self._model_info(model)
        if info is None:
            return None
        price = info.get_prices(_now())
        cached = self._rates.get(model)
        if cached is None or cached[0] is not price:
            cached = self._rates[model] = (price, _Rates.of_genai(price))
        return cached[1]


_TOKEN_PRICES = ("input_mtok", "cache_read_mtok", "output_mtok")


class _Rates:
    """Flat rates per million tokens as integers: cost = Σ tokens × rate / 10**scale USD/Mtok."""
    __slots__ = ("input", "cached", "output", "scale")

    def __init__(self, input: int, cached: int, output: int, scale: int):
        self.input, self.cached, self.output, self.scale = input, cached, output, scale

    @classmethod
    def of(cls, input_rate: Decimal, cached_rate: Decimal | None, output_rate: Decimal) -> _Rates | None:
        rates = [input_rate, input_rate if cached_rate is None else cached_rate, output_rate]
        if not all(r.is_finite() and r >= 0 for r in rates):
            return None
        scale = max(0, *(-r.as_tuple().exponent for r in rates))    # type: ignore[operator]
        if scale > 18:
            return None
        input_int, cached_int, output_int = (int(r.scaleb(scale)) for r in rates)
        return cls(input_int, cached_int, output_int, scale)

    @classmethod
    def of_genai(cls, price) -> _Rates | None:
        """Rates of a genai-prices ModelPrice, or None when it is not flat per-token pricing
        (tiers, a price per request, other token kinds): those go through genai-prices."""
        values = {k: v for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
        for key, value in values.items():
            if key in _TOKEN_PRICES:
                if not isinstance(value, Decimal):
                    return None
            elif key.endswith("_mtok") or key.startswith("requests"):
                return None
        if "input_mtok" not in values and "output_mtok" not in values:
            return None
        return cls.of(values.get("input_mtok", Decimal(0)), values.get("cache_read_mtok"),
                      values.get("output_mtok", Decimal(0)))

    def usd(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
        """The exact cost in USD (not rounded)."""
        total = (input_tokens - cached_tokens) * self.input + cached_tokens * self.cached + output_tokens * self.output
        return Decimal(total).scaleb(-self.scale) / MILLION

    def nanousd(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> int:
        # USD = Σ/10**scale/1e6, nano-USD = Σ × 1000 / 10**scale, rounded half to even.
        total = ((input_tokens - cached_tokens) * self.input + cached_tokens * self.cached
                 + output_tokens * self.output) * 1000
        if self.scale == 0:
            return total
        quotient, remainder = divmod(total, 10 ** self.scale)
        twice = 2 * remainder
        half = 10 ** self.scale
        if twice > half or (twice == half and quotient % 2):
            quotient += 1
        return quotient


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _price_data():
    """genai-prices and its bundled data, about 16 MB resident: loaded by the processes that
    price calls (a Pricer), not by those that only format money (the worker, most of the CLI)."""
    import genai_prices
    import genai_prices.data_snapshot
    return genai_prices


_OTHER_SHAPE = "other"          # the helper's word for a model priced in-process (not flat rates)
HELPER_TIMEOUT_SECONDS = 60


def _rates_from_helper(models: list[str]) -> dict[str, _Rates | None | str]:
    """Ask `python -m shared.core.pricing` for these models: flat rates, None (unknown to
    genai-prices) or _OTHER_SHAPE. If the helper cannot run, every model is _OTHER_SHAPE
    (priced here, as without the helper)."""
    import json
    import subprocess
    import sys
    try:
        done = subprocess.run([sys.executable, "-m", "shared.core.pricing"], input=json.dumps(models).encode(),
                              capture_output=True, timeout=HELPER_TIMEOUT_SECONDS, check=True)
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("the pricing helper failed (%s); pricing with genai-prices in this process", exc)
        return {model: _OTHER_SHAPE for model in models}
    return {model: (_Rates(*found[model]) if isinstance(found.get(model), list) else
                    None if found.get(model) is None else _OTHER_SHAPE) for model in models}


def _helper_answer(models: list[str]) -> dict[str, list[int] | str | None]:
    """In the helper: each model's flat rates as [input, cached, output, scale] when its
    price is one unconditional flat price (it cannot change while a bot runs), None when
    genai-prices does not know it, "other" for any other shape."""
    pricer = Pricer()
    answer: dict[str, list[int] | str | None] = {}
    for model in models:
        info = pricer._model_info(model)
        if info is None:
            answer[model] = None
            continue
        price = getattr(info, "prices", None)
        rates = _Rates.of_genai(price) if price is not None and not isinstance(price, list) else None
        answer[model] = [rates.input, rates.cached, rates.output, rates.scale] if rates else _OTHER_SHAPE
    return answer


def _override_cost(price: ModelPrice, input_tokens: int, cached_tokens: int, output_tokens: int) -> Decimal:
    cached_rate = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    uncached = max(0, input_tokens - cached_tokens)
    return (uncached * price.input_per_mtok + cached_tokens * cached_rate
            + output_tokens * price.output_per_mtok) / MILLION


if __name__ == "__main__":
    import json
    import sys
    logging.disable(logging.WARNING)          # the bot warns about unknown models itself
    sys.stdout.write(json.dumps(_helper_answer(json.loads(sys.stdin.read()))))
