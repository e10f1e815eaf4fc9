"""Integer pricing from cached rates equals genai-prices' Decimal result, rounded once."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices import data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.config import ModelPrice, PricingConfig
from shared.core.pricing import Pricer, usd_to_nano

ROOT = Path(__file__).resolve().parents[3]
OPENAI_MODELS = sorted({model.id for provider in data_snapshot.get_snapshot().providers
                        if provider.id == "openai" for model in provider.models})
PRICER = Pricer(PricingConfig(overrides={
    "local-fine": ModelPrice(Decimal("0.0375"), Decimal("0.00001"), Decimal("1.1")),
    "local-flat": ModelPrice(Decimal("2"), None, Decimal("8")),
}))
usage = st.integers(0, 3_000_000).flatmap(
    lambda inp: st.tuples(st.just(inp), st.integers(0, inp), st.integers(0, 200_000)))


def _reference(model: str, inp: int, cached: int, out: int) -> int:
    """What the Decimal path gives: genai-prices' own calc_price, or the override formula."""
    if model in PRICER.overrides:
        return usd_to_nano(PRICER.cost_usd(model, inp, cached, out) or Decimal(0))
    if inp == 0 and out == 0:
        return 0
    tokens = genai_prices.Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out)
    try:
        return usd_to_nano(genai_prices.calc_price(tokens, model, provider_id="openai").total_price)
    except LookupError:
        return 0


def test_there_are_models_to_compare():
    assert len(OPENAI_MODELS) > 20
    assert "gpt-4o-mini" in OPENAI_MODELS


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPENAI_MODELS + ["local-fine", "local-flat", "no-such-model-xyz"]), usage)
def test_cached_integer_rates_price_every_call_as_the_decimal_path_does(model, tokens):
    assert PRICER.cost_nanousd(model, *tokens) == _reference(model, *tokens)


def test_every_openai_model_prices_a_typical_call_exactly():
    for model in OPENAI_MODELS:
        for tokens in ((1234, 1000, 567), (0, 0, 0), (1, 0, 0), (199_999, 0, 1), (300_000, 100_000, 20_000)):
            assert PRICER.cost_nanousd(model, *tokens) == _reference(model, *tokens), (model, tokens)


def test_a_fraction_of_a_nano_dollar_rounds_half_to_even_as_usd_to_nano_does():
    # Cached input at 0.00001 USD/Mtok: n tokens cost n/100 nano-USD.
    costs = [PRICER.cost_nanousd("local-fine", n, n, 0) for n in (50, 150, 250, 70, 349)]
    assert costs == [0, 2, 2, 1, 3]
    assert costs == [_reference("local-fine", n, n, 0) for n in (50, 150, 250, 70, 349)]


# The bot's pricer: each model found once by a helper process, genai-prices' data not loaded here.
HELPED = Pricer(PricingConfig(overrides=PRICER.overrides), out_of_process=True)
HELPED.prefetch(OPENAI_MODELS + ["no-such-model-xyz", "deepseek-chat"])     # one helper run for all


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPENAI_MODELS + ["local-fine", "local-flat", "no-such-model-xyz", "deepseek-chat"]), usage)
def test_rates_found_by_the_helper_process_price_every_call_as_in_process(model, tokens):
    assert HELPED.cost_nanousd(model, *tokens) == PRICER.cost_nanousd(model, *tokens)
    assert HELPED.price(model, *tokens) == PRICER.price(model, *tokens)
    assert HELPED.is_priced(model) == PRICER.is_priced(model)
    assert HELPED.cost_usd(model, *tokens) == PRICER.cost_usd(model, *tokens)


def test_the_helper_finds_flat_rates_and_leaves_other_price_shapes_to_genai_prices():
    assert "gpt-4o-mini" in HELPED._fixed and HELPED._fixed["no-such-model-xyz"] is None
    assert "deepseek-chat" not in HELPED._fixed          # time-of-day prices: priced by genai-prices here
    assert HELPED.cost_nanousd("deepseek-chat", 1000, 0, 1000) == _reference_any("deepseek-chat", 1000, 0, 1000)


def _reference_any(model, inp, cached, out):
    tokens = genai_prices.Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out)
    return usd_to_nano(genai_prices.calc_price(tokens, model).total_price)


def test_a_bot_process_prices_its_models_without_loading_genai_prices_data(tmp_path):
    code = ("import sys; from shared.core.pricing import Pricer; p = Pricer(out_of_process=True); "
            "p.prefetch(['gpt-4o-mini']); print(p.cost_nanousd('gpt-4o-mini', 2000, 1000, 300), "
            "p.cost_nanousd('gpt-4.1-nano', 10, 0, 10), 'genai_prices.data' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    a, b, loaded = done.stdout.split()
    assert (int(a), int(b)) == (PRICER.cost_nanousd("gpt-4o-mini", 2000, 1000, 300),
                                PRICER.cost_nanousd("gpt-4.1-nano", 10, 0, 10))
    assert loaded == "False"


def test_without_the_helper_the_bot_prices_in_process(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    pricer = Pricer(out_of_process=True)
    assert pricer.cost_nanousd("gpt-4o-mini", 2000, 1000, 300) == PRICER.cost_nanousd("gpt-4o-mini", 2000, 1000, 300)
    assert "gpt-4o-mini" in pricer._models
