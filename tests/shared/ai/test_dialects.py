"""What OpenAI-compatible servers other than OpenAI really answer, through the real openai
client against the simulator: each answer's outcome, the rotation it causes, and that
nothing stops while a good key stands idle (docs/design.md invariant 12)."""
from __future__ import annotations

import dataclasses

import pytest

from shared.ai.client import NoKeyAvailable
from shared.ai.openai_dialect import classify_status, read_usage
from shared.ai.token_estimates import estimate_prompt_tokens, estimate_text_tokens
from shared.core.accounting import Outcome
from shared.core.config import parse_config
from shared.core.keys import sync_keys
from shared.core.models import utcnow
from shared.core.pricing import Pricer
from shared.core.status import Status, key_status
from shared.tools.simulator import Fault, Simulator
from tests.shared.client_fixtures import close_harness, harness, open_harness, sim  # noqa: F401

HELLO = [{"role": "user", "content": "hello there"}]


def status(h, label):
    return key_status(h.key(label), utcnow(), h.config.pool.low_threshold)


async def test_a_proxy_budget_exceeded_422_exhausts_the_key_and_the_pool_moves_on(harness):
    harness.sim.set_fault("k1", Fault.budget())
    results = [await harness.client.chat(HELLO, operation="t") for _ in range(3)]
    assert [r.key_label for r in results] == ["k2", "k2", "k2"]
    (event,) = harness.events("k1")
    # The stored code keeps the proxy's error type, not the status twice ("422 422").
    assert (event.outcome, event.error_code) == ("quota_exhausted", "422 budget_exceeded")
    assert status(harness, "k1") is Status.EXHAUSTED and harness.sent("k1") == 1


async def test_payment_required_402_exhausts_the_key(harness):
    harness.sim.script("k1", Fault.payment())
    assert (await harness.client.chat(HELLO, operation="t")).key_label == "k2"
    (event,) = harness.events("k1")
    assert (event.outcome, event.error_code) == ("quota_exhausted", "402 payment_required")
    assert status(harness, "k1") is Status.EXHAUSTED


async def test_a_json_404_of_a_wrong_path_marks_the_key_misconfigured_until_its_base_url_is_fixed(
        sqlite_db, sqlite_url, sim):
    h = await open_harness(sim, sqlite_url, base_urls={1: sim.base_url + "/openai"})
    try:
        for _ in range(3):
            assert (await h.client.chat(HELLO, operation="t")).key_label == "k2"
        (event,) = h.events("k1")
        assert (event.outcome, event.error_code) == ("misconfigured", "misconfigured: 404 not_found at the base_url")
        key = h.key("k1")
        assert key.invalid and key.invalid_reason.startswith("misconfigured") and status(h, "k1") is Status.INVALID
        assert len(h.events("k1")) == 1          # asked once (the wrong path never reaches the API)
        # The owner corrects base_url in config: the key is usable again.
        fixed = dataclasses.replace(h.config, keys=[dataclasses.replace(k, base_url=sim.base_url)
                                                    for k in h.config.keys])
        sync_keys(fixed)
        assert status(h, "k1") is Status.FRESH
    finally:
        await close_harness(h)


@pytest.mark.parametrize("how", ["negative", "text", "absent"])
async def test_impossible_or_absent_usage_is_recorded_as_an_estimate_never_negative(harness, how):
    harness.sim.script("k1", Fault.bad_usage(how))
    result = await harness.client.chat(HELLO, operation="t")
    (event,) = harness.events()
    assert (result.key_label, event.outcome, event.estimated, result.estimated) == ("k1", "ok", True, True)
    assert event.input_tokens == estimate_prompt_tokens(HELLO)
    assert event.output_tokens == estimate_text_tokens(result.text) > 0
    assert event.cost_nanousd >= 0 and harness.key("k1").used_today == event.total_tokens > 0
    if how != "absent":
        assert event.error_code.startswith("impossible usage: prompt_tokens=")


async def test_negative_usage_with_a_price_override_stores_no_negative_cost(sqlite_db, sqlite_url, sim):
    override = {"overrides": {"gpt-4o-mini": {"input_per_mtok": "3000", "output_per_mtok": "1"}}}
    h = await open_harness(sim, sqlite_url, pricing=override)
    try:
        h.sim.script("k1", Fault.bad_usage("negative"))
        result = await h.client.chat(HELLO, operation="t")
        (event,) = h.events()
        assert event.input_tokens > 0 and 0 <= event.cost_nanousd == result.cost_nanousd < 1_000_000_000
    finally:
        await close_harness(h)


def test_genai_prices_refusing_odd_numbers_is_no_exception():
    pricer = Pricer()
    assert pricer.cost_usd("gpt-4o-mini", -6_839_766, 0, 20) is None
    assert pricer.cost_nanousd("gpt-4o-mini", 10, 50, 20) >= 0       # more cached than input


async def test_a_stream_answered_with_plain_json_is_a_normal_answer(harness):
    harness.sim.script("k1", Fault.no_sse())
    async with harness.client.stream(HELLO, operation="stream") as stream:
        deltas = [d async for d in stream]
    served = harness.sim.stats("k1")
    result = stream.result
    assert deltas == [result.text] and result.text
    (event,) = harness.events()
    assert (event.outcome, event.estimated) == ("ok", False)
    assert (event.input_tokens, event.output_tokens) == (served.prompt_tokens, served.completion_tokens)


async def test_requests_per_day_limit_exhausts_the_key_and_the_next_serves(harness):
    harness.sim._key("k1").rpd = 2
    labels = [(await harness.client.chat(HELLO, operation="t")).key_label for _ in range(4)]
    assert labels == ["k1", "k1", "k2", "k2"]
    assert harness.events("k1")[-1].outcome == "quota_exhausted"
    assert status(harness, "k1") is Status.EXHAUSTED


async def test_requests_only_go_to_keys_that_serve_the_model(sqlite_db, sqlite_url, sim):
    settings = {1: {"models": ["gpt-4o*"]}, 2: {"models": ["o4-mini", "gpt-5*"]}}
    h = await open_harness(sim, sqlite_url, key_settings=settings)
    try:
        assert (await h.client.chat(HELLO, operation="t", model="gpt-5-mini")).key_label == "k2"
        assert (await h.client.chat(HELLO, operation="t", model="gpt-4.1")).key_label == "k3"
        assert (await h.client.chat(HELLO, operation="t", model="gpt-4o")).key_label == "k1"
        assert [h.sent(k) for k in ("k1", "k2", "k3")] == [1, 1, 1]
    finally:
        await close_harness(h)


async def test_a_pool_mixing_providers_rotates_past_a_key_that_does_not_serve_the_model(
        sqlite_db, sqlite_url, sim):
    async with Simulator(accept_unknown_keys=True, models=("llama-3.3-70b-versatile",)) as groq:
        # k1 and k2 sit behind a provider without the model and say nothing about their models.
        h = await open_harness(sim, sqlite_url, base_urls={3: groq.base_url})
        try:
            result = await h.client.chat(HELLO, operation="t", model="llama-3.3-70b-versatile")
            assert result.key_label == "k3" and result.model == "llama-3.3-70b-versatile"
            assert [(s.key_label, s.outcome) for s in result.steps] == \
                [("k1", "bad_request"), ("k2", "bad_request"), ("k3", "ok")]
            assert status(h, "k1") is Status.FRESH      # not the key's fault
        finally:
            await close_harness(h)


async def test_a_model_chain_falls_back_when_no_key_can_serve_the_first(sqlite_db, sqlite_url, sim):
    settings = {1: {"models": ["gpt-4o-mini"]}, 2: {"models": ["gpt-4o-mini"]}, 3: {"models": ["gpt-4.1-nano"]}}
    h = await open_harness(sim, sqlite_url, key_settings=settings)
    try:
        chain = ["gpt-4o-mini", "gpt-4.1-nano"]
        first = await h.client.chat(HELLO, operation="t", models=chain)
        assert (first.key_label, first.model) == ("k1", "gpt-4o-mini")
        h.sim.set_fault("k1", Fault.quota())
        h.sim.set_fault("k2", Fault.budget())
        second = await h.client.chat(HELLO, operation="t", models=chain)
        assert (second.key_label, second.model) == ("k3", "gpt-4.1-nano")
        # Cost is that of the model actually used.
        assert h.events()[-1].model == "gpt-4.1-nano"
        assert second.cost_nanousd == Pricer().cost_nanousd("gpt-4.1-nano", second.input_tokens,
                                                             second.cached_tokens, second.output_tokens)
        h.sim.set_fault("k3", Fault.quota())
        with pytest.raises(NoKeyAvailable, match="gpt-4.1-nano"):
            await h.client.chat(HELLO, operation="t", models=chain)
    finally:
        await close_harness(h)


async def test_nothing_stops_while_a_good_key_stands_idle(sqlite_db, sqlite_url, sim):
    """Every bad answer of the dialects at once, on four keys; the fifth answers every call."""
    h = await open_harness(sim, sqlite_url, n=5, client={"max_attempts": 5},
                           base_urls={3: sim.base_url + "/wrong"})
    try:
        h.sim.set_fault("k1", Fault.budget())
        h.sim.set_fault("k2", Fault.payment())
        h.sim.set_fault("k4", Fault.invalid())
        for _ in range(3):
            result = await h.client.chat(HELLO, operation="t")
            assert result.key_label == "k5" and result.text
        assert [len(h.events(f"k{i}")) for i in range(1, 6)] == [1, 1, 1, 1, 3]
    finally:
        await close_harness(h)


@pytest.mark.parametrize("status_code, body, outcome, code", [
    (429, {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"},
     Outcome.QUOTA_EXHAUSTED, "429 insufficient_quota"),
    (422, {"message": "Budget has been exceeded!", "type": "budget_exceeded", "code": "422"},
     Outcome.QUOTA_EXHAUSTED, "422 budget_exceeded"),
    (400, {"message": "Budget has been exceeded! Current cost: 3", "type": "budget_exceeded", "code": "400"},
     Outcome.QUOTA_EXHAUSTED, "400 budget_exceeded"),
    (402, "Payment Required", Outcome.QUOTA_EXHAUSTED, "402 payment_required"),
    (429, {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
     Outcome.RATE_LIMITED, "429 rate_limit_exceeded"),
    (401, {"message": "Authentication Error", "type": "auth_error", "code": "401"},
     Outcome.INVALID_KEY, "401 auth_error"),
    (403, {"message": "Country not supported", "type": "request_forbidden", "code": "unsupported_country"},
     Outcome.INVALID_KEY, "403 unsupported_country"),
    (404, {"detail": "Not Found"}, Outcome.MISCONFIGURED, "misconfigured: 404 not_found at the base_url"),
    (405, "Method Not Allowed", Outcome.MISCONFIGURED, "misconfigured: 405 method_not_allowed at the base_url"),
    (404, {"message": "The model `x` does not exist", "type": "invalid_request_error", "code": "model_not_found"},
     Outcome.BAD_REQUEST, "404 model_not_found"),
    (400, {"message": "max_tokens must be positive", "type": "invalid_request_error", "code": None},
     Outcome.BAD_REQUEST, "400 invalid_request_error"),
    (503, None, Outcome.SERVER_ERROR, "503 http_error"),
])
def test_error_answers_are_classified_whatever_their_spelling(status_code, body, outcome, code):
    failure = classify_status(status_code, {}, body)
    assert (failure.outcome, failure.error_code) == (outcome, code)


def test_usage_numbers_are_believed_only_when_possible():
    assert read_usage({"prompt_tokens": 5, "completion_tokens": 3})[0].total == 8
    assert read_usage(None) == (None, "")
    for bad in ({"prompt_tokens": -1, "completion_tokens": 3}, {"prompt_tokens": 5},
                {"prompt_tokens": True, "completion_tokens": 3}, {"prompt_tokens": 2.5, "completion_tokens": 3},
                {"prompt_tokens": 10**12, "completion_tokens": 3}):
        usage, problem = read_usage(bad)
        assert usage is None and problem.startswith("impossible usage")
    usage, _ = read_usage({"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 99},
                           "completion_tokens_details": {"reasoning_tokens": -4}})
    assert (usage.cached, usage.reasoning) == (5, 0)


def test_a_key_config_says_which_models_it_serves():
    config = parse_config({"keys": [{"label": "g", "api_key": "sk-" + "g" * 30, "models": ["gemini-*"]}]}, env={})
    assert config.keys[0].models == ["gemini-*"]
