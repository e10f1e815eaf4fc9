"""Rate-limit headers and token estimates: pure functions, no fixtures."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.ai.rate_limits import (
    format_duration,
    parse_duration,
    rate_limit_ends_at,
    rate_limit_snapshot,
    retry_after,
)
from shared.ai.token_estimates import (
    estimate_prompt_tokens,
    estimate_text_tokens,
    message_text,
)
from shared.core.accounting import RateLimitSnapshot

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
S = dt.timedelta(seconds=1)


@pytest.mark.parametrize("text, seconds", [
    ("6m0s", 360), ("1s", 1), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("0s", 0), ("20", 20), ("0.5", 0.5),
    ("1.5ms", 0.0015), ("250us", 0.00025), ("3m", 180), (".5s", 0.5), (" 7s ", 7),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "1h2x", "s", "-1s", "1s2", "5 s", "1e3s", "9999999h"])
def test_parse_duration_ignores_what_it_cannot_read(text):
    assert parse_duration(text) is None


@given(st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000))
def test_format_and_parse_round_trip_to_the_millisecond(millis):
    delta = dt.timedelta(milliseconds=millis)
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize("delta, text", [(360 * S, "6m0s"), (S, "1s"), (0.12 * S, "120ms"),
                                         (3723.5 * S, "1h2m3.5s"), (0 * S, "0ms")])
def test_format_duration_spells_like_the_provider(delta, text):
    assert format_duration(delta) == text


def test_snapshot_from_openai_headers():
    headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "200000",
               "x-ratelimit-remaining-requests": "499", "x-ratelimit-remaining-tokens": "199913",
               "x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "6m0s"}
    assert rate_limit_snapshot(headers, NOW) == RateLimitSnapshot(
        remaining_requests=499, remaining_tokens=199_913, limit_requests=500, limit_tokens=200_000,
        reset_requests_at=NOW + 0.12 * S, reset_tokens_at=NOW + 360 * S)


def test_no_headers_no_snapshot_and_garbage_is_skipped():
    assert rate_limit_snapshot({"content-type": "application/json"}, NOW) is None
    partial = rate_limit_snapshot({"x-ratelimit-remaining-tokens": "lots", "x-ratelimit-limit-tokens": "9"}, NOW)
    assert partial == RateLimitSnapshot(limit_tokens=9)


@pytest.mark.parametrize("headers, after", [
    ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5 * S),
    ({"retry-after": "20"}, 20 * S),
    ({"retry-after": "Sun, 01 Mar 2026 12:00:30 GMT"}, 30 * S),
    ({"retry-after": "Sun, 01 Mar 2026 11:00:00 GMT"}, 0 * S),     # a date in the past: now
])
def test_retry_after(headers, after):
    assert retry_after(headers, NOW) == NOW + after


def test_retry_after_absent_or_unreadable():
    assert retry_after({}, NOW) is None
    assert retry_after({"retry-after": "whenever"}, NOW) is None


def test_rate_limit_ends_at_prefers_retry_after_then_the_exhausted_limits_reset():
    exhausted_both = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s",
                      "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"}
    assert rate_limit_ends_at(exhausted_both, NOW) == NOW + 60 * S
    assert rate_limit_ends_at({**exhausted_both, "retry-after": "5"}, NOW) == NOW + 5 * S
    tokens_left = {**exhausted_both, "x-ratelimit-remaining-tokens": "10"}
    assert rate_limit_ends_at(tokens_left, NOW) == NOW + 2 * S
    assert rate_limit_ends_at({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"},
                              NOW) is None


def test_token_estimates_are_characters_over_four_plus_chat_overhead():
    assert [estimate_text_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": [
        {"type": "text", "text": "y" * 8}, {"type": "image_url", "image_url": {"url": "data:"}}]}]
    assert message_text(messages[1]) == "y" * 8
    assert estimate_prompt_tokens(messages) == 3 + (4 + 10) + (4 + 2) + 85 + 8 * 170   # the image at its worst
    assert estimate_prompt_tokens([]) == 0
