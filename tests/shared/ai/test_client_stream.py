"""Streaming through the tracked client: usage from the final chunk, estimates when cut."""
from __future__ import annotations

import pytest

from shared.ai.client import NoKeyAvailable, StreamInterrupted
from shared.ai.token_estimates import estimate_prompt_tokens, estimate_text_tokens
from shared.tools.simulator import Fault
from tests.shared.client_fixtures import harness, sim  # noqa: F401

HELLO = [{"role": "user", "content": "tell me something"}]


async def test_stream_yields_deltas_and_records_usage_from_the_final_chunk(harness):
    async with harness.client.stream(HELLO, operation="stream", chat_id=7) as stream:
        deltas = [d async for d in stream]
    result = stream.result
    served = harness.sim.stats("k1")
    assert len(deltas) > 3 and "".join(deltas) == result.text
    assert (result.input_tokens, result.output_tokens, result.estimated) == \
        (served.prompt_tokens, served.completion_tokens, False)
    (event,) = harness.events()
    assert (event.outcome, event.estimated, event.chat_id, event.operation) == ("ok", False, 7, "stream")
    assert event.output_tokens == served.completion_tokens and event.call_id == result.call_id
    assert harness.key("k1").rl_remaining_requests == 4999


async def test_a_cut_stream_is_recorded_as_an_estimate(harness):
    harness.sim.script("k1", Fault.cut(chunks=4))
    received = []
    with pytest.raises(StreamInterrupted) as caught:
        async for delta in harness.client.stream(HELLO, operation="stream"):
            received.append(delta)
    partial = "".join(received)
    assert caught.value.partial_text == partial and len(received) == 3   # role chunk + 3 words
    (event,) = harness.events()
    assert (event.outcome, event.estimated) == ("interrupted", True)
    assert event.input_tokens == estimate_prompt_tokens(HELLO)
    assert event.output_tokens == estimate_text_tokens(partial) > 0
    assert event.error_code.startswith("stream cut")
    key = harness.key("k1")
    assert key.used_today == event.total_tokens and key.errors_today == 0


async def test_a_consumer_that_stops_early_still_gets_the_call_recorded(harness):
    async with harness.client.stream(HELLO, operation="stream") as stream:
        async for _delta in stream:
            break
    (event,) = harness.events()
    assert (event.outcome, event.estimated, event.error_code) == \
        ("interrupted", True, "stream closed early by the caller")
    assert stream.result.call_id == event.call_id


async def test_a_stream_fails_over_before_its_first_chunk(harness):
    harness.sim.script("k1", Fault.rate_limit(10))
    harness.sim.script("k2", Fault.invalid())
    async with harness.client.stream(HELLO, operation="stream") as stream:
        text = "".join([d async for d in stream])
    assert stream.result.key_label == "k3" and text
    assert [e.outcome for e in harness.events()] == ["rate_limited", "invalid_key", "ok"]


async def test_a_stream_with_no_key_raises_no_key_available(harness):
    for label in ("k1", "k2", "k3"):
        harness.sim.set_fault(label, Fault.quota())
    with pytest.raises(NoKeyAvailable):
        async for _ in harness.client.stream(HELLO, operation="stream"):
            pass
    assert len(harness.events()) == 3
