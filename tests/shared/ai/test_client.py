"""The tracked client over real HTTP against the simulator, on SQLite: outcomes, failover,
never sending to an unusable key, bad input, and the console line."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os

import peewee
import pytest

from shared.ai.client import NoKeyAvailable, ProviderUnavailable, RequestRejected
from shared.ai.rehearsal import REHEARSALS
from shared.ai.token_estimates import estimate_prompt_tokens
from shared.core.accounting import Accountant, CallRecord
from shared.core.db import database
from shared.core.liveness import beat
from shared.core.models import ApiKey, ChatRollup, DailyRollup, KeyRanking, UsageEvent, utcnow
from shared.core.status import Status, key_status, window_usage
from shared.core.usage import Usage
from shared.tools.simulator import Fault
from tests.shared.client_fixtures import (  # noqa: F401
    close_harness,
    harness,
    open_harness,
    secret,
    sim,
)

HELLO = [{"role": "user", "content": "hello there"}]


def status(h, label):
    return key_status(h.key(label), utcnow(), h.config.pool.low_threshold)


async def test_ok_call_records_real_usage_and_rate_limit_headers(harness):
    result = await harness.client.chat(HELLO, operation="autoreply", chat_id=42)
    served = harness.sim.stats("k1")
    assert (result.key_label, result.estimated) == ("k1", False)
    assert (result.input_tokens, result.output_tokens) == (served.prompt_tokens, served.completion_tokens)
    assert result.text and result.output_tokens > 0
    (event,) = harness.events()
    assert (event.outcome, event.operation, event.bot, event.chat_id) == ("ok", "autoreply", "main", 42)
    assert (event.input_tokens, event.output_tokens) == (result.input_tokens, result.output_tokens)
    assert event.call_id == result.call_id and event.cost_nanousd == result.cost_nanousd > 0
    assert event.duration_ms == result.duration_ms
    key = harness.key("k1")
    assert key.used_today == result.input_tokens + result.output_tokens
    assert key.rl_limit_requests == 5000 and key.rl_remaining_requests == 4999
    assert key.rl_reset_requests_at is not None and key.rl_reset_requests_at > event.at


async def test_rate_limit_cools_the_key_and_the_same_request_moves_on(harness):
    harness.sim.script("k1", Fault.rate_limit(30))
    before = utcnow()
    result = await harness.client.chat(HELLO, operation="autoreply")
    assert result.key_label == "k2"
    (hit,) = harness.events("k1")
    assert (hit.outcome, hit.error_code, hit.total_tokens) == ("rate_limited", "429 rate_limit_exceeded", 0)
    key = harness.key("k1")
    # retry-after-ms said 30 s.
    assert before + dt.timedelta(seconds=29) < key.cooldown_until < utcnow() + dt.timedelta(seconds=31)
    assert status(harness, "k1") is Status.RATE_LIMITED
    assert (key.rate_hits_today, key.errors_today, key.rl_remaining_requests) == (1, 0, 0)
    await harness.client.chat(HELLO, operation="autoreply")
    assert harness.sent("k1") == 1 and harness.sent("k2") == 2


async def test_rate_limit_cooldown_from_reset_header_when_no_retry_after(harness):
    harness.sim.script("k1", Fault.rate_limit(6, hint="reset"))
    await harness.client.chat(HELLO, operation="t")
    (hit,) = harness.events("k1")
    assert abs((harness.key("k1").cooldown_until - hit.at).total_seconds() - 6) < 0.01


async def test_rate_limit_without_hints_backs_off_exponentially(harness):
    for expected in (5, 10, 20):
        harness.sim.script("k1", Fault.rate_limit(hint="none"))
        ApiKey.update(cooldown_until=None).where(ApiKey.label == "k1").execute()
        await harness.client.chat(HELLO, operation="t")
        hit = harness.events("k1")[-1]
        assert (harness.key("k1").cooldown_until - hit.at).total_seconds() == pytest.approx(expected)
    ApiKey.update(cooldown_until=None).where(ApiKey.label == "k1").execute()
    await harness.client.chat(HELLO, operation="t")           # success on k1 resets the backoff
    harness.sim.script("k1", Fault.rate_limit(hint="none"))
    await harness.client.chat(HELLO, operation="t")
    hit = harness.events("k1")[-1]
    assert (harness.key("k1").cooldown_until - hit.at).total_seconds() == pytest.approx(5)


async def test_insufficient_quota_exhausts_the_key_for_its_window(harness):
    harness.sim.script("k1", Fault.quota())
    result = await harness.client.chat(HELLO, operation="t")
    assert result.key_label == "k2"
    key = harness.key("k1")
    assert key.exhausted_window == window_usage(key, utcnow()).window_start
    assert status(harness, "k1") is Status.EXHAUSTED
    assert harness.events("k1")[0].outcome == "quota_exhausted"
    for _ in range(3):
        await harness.client.chat(HELLO, operation="t")
    assert harness.sent("k1") == 1


async def test_simulator_allowance_running_out_exhausts_the_key(harness):
    harness.sim.set_allowance("k1", 150)
    labels = [(await harness.client.chat(HELLO, operation="t")).key_label for _ in range(6)]
    served = harness.sim.stats("k1")
    assert labels[0] == "k1" and labels[-1] == "k2"
    assert status(harness, "k1") is Status.EXHAUSTED
    ok = [e for e in harness.events("k1") if e.outcome == "ok"]
    assert sum(e.total_tokens for e in ok) == served.used >= 150
    assert harness.sent("k1") == len(harness.events("k1")) == served.ok + 1


async def test_invalid_key_is_marked_invalid_and_skipped(harness):
    harness.sim.script("k1", Fault.invalid())
    result = await harness.client.chat(HELLO, operation="t")
    assert result.key_label == "k2"
    key = harness.key("k1")
    assert key.invalid and key.invalid_reason == "401 invalid_api_key"
    assert status(harness, "k1") is Status.INVALID
    await harness.client.chat(HELLO, operation="t")
    assert harness.sent("k1") == 1


async def test_server_error_is_retried_on_the_same_key_then_the_next(harness):
    harness.sim.script("k1", Fault.server_error(), Fault.server_error(502))
    result = await harness.client.chat(HELLO, operation="t")
    assert result.key_label == "k2"
    errors = harness.events("k1")
    assert [(e.outcome, e.error_code, e.total_tokens) for e in errors] == \
        [("server_error", "500 server_error", 0), ("server_error", "502 server_error", 0)]
    key = harness.key("k1")
    assert key.errors_today == 2 and key.used_today == 0
    assert status(harness, "k1") is Status.FRESH       # a 5xx is not the key's fault


async def test_one_server_error_recovers_on_the_same_key(harness):
    harness.sim.script("k1", Fault.server_error())
    result = await harness.client.chat(HELLO, operation="t")
    assert result.key_label == "k1"
    assert [e.outcome for e in harness.events()] == ["server_error", "ok"]


async def test_timeout_is_recorded_and_the_next_key_answers(sqlite_db, sqlite_url, sim):
    # k2's answer must come within the timeout too: 1 s, so that a loaded machine does not time it out.
    h = await open_harness(sim, sqlite_url, client={"timeout_seconds": 1.0, "server_error_retries": 0})
    try:
        h.sim.script("k1", Fault.slow(3600))            # answers never; the handler ends when the client hangs up
        result = await h.client.chat(HELLO, operation="t")
        assert result.key_label == "k2"
        (timeout,) = h.events("k1")
        assert timeout.outcome == "timeout" and timeout.duration_ms >= 1000
        # The request went out: the provider may bill its prompt, so an estimate is charged.
        assert (timeout.input_tokens, timeout.output_tokens, timeout.estimated) == \
            (estimate_prompt_tokens(HELLO), 0, True)
    finally:
        await close_harness(h)


async def test_unusable_keys_are_never_sent_a_request(harness):
    now = utcnow()
    ApiKey.update(cooldown_until=now + dt.timedelta(minutes=5)).where(ApiKey.label == "k1").execute()
    ApiKey.update(invalid=True).where(ApiKey.label == "k2").execute()
    for _ in range(4):
        assert (await harness.client.chat(HELLO, operation="t")).key_label == "k3"
    ApiKey.update(disabled=True).where(ApiKey.label == "k3").execute()
    with pytest.raises(NoKeyAvailable) as caught:
        await harness.client.chat(HELLO, operation="t")
    assert caught.value.frees_up_at == harness.key("k1").cooldown_until
    assert "frees up in 4m" in str(caught.value)
    assert (harness.sent("k1"), harness.sent("k2"), harness.sent("k3")) == (0, 0, 4)


async def test_exhausted_by_our_own_books_is_never_sent_a_request(harness):
    limit = harness.key("k1").daily_token_limit
    ApiKey.update(used_today=limit, window_start=window_usage(harness.key("k1"), utcnow()).window_start) \
        .where(ApiKey.label == "k1").execute()
    assert (await harness.client.chat(HELLO, operation="t")).key_label == "k2"
    assert harness.sent("k1") == 0


async def test_no_key_left_says_when_the_first_frees_up(harness):
    harness.sim.script("k1", Fault.quota())
    harness.sim.script("k2", Fault.rate_limit(90))
    harness.sim.script("k3", Fault.invalid())
    with pytest.raises(NoKeyAvailable) as caught:
        await harness.client.chat(HELLO, operation="t")
    assert not isinstance(caught.value, ProviderUnavailable)
    assert caught.value.frees_up_at == harness.key("k2").cooldown_until
    assert [e.outcome for e in harness.events()] == ["quota_exhausted", "rate_limited", "invalid_key"]


async def test_attempts_per_request_are_bounded(sqlite_db, sqlite_url, sim):
    h = await open_harness(sim, sqlite_url, n=5, client={"max_attempts": 2})
    try:
        for i in range(1, 6):
            h.sim.set_fault(f"k{i}", Fault.rate_limit(60))
        with pytest.raises(NoKeyAvailable):
            await h.client.chat(HELLO, operation="t")
        assert [h.sent(f"k{i}") for i in range(1, 6)] == [1, 1, 0, 0, 0]
    finally:
        await close_harness(h)


async def test_server_errors_everywhere_raise_provider_unavailable(harness):
    for label in ("k1", "k2", "k3"):
        harness.sim.set_fault(label, Fault.server_error(503))
    with pytest.raises(ProviderUnavailable, match="not answering"):
        await harness.client.chat(HELLO, operation="t")
    assert len(harness.events()) == 6                          # 3 keys x (1 + 1 retry)
    assert sum(k.total_tokens for k in ApiKey.select()) == 0


async def test_unknown_model_is_asked_of_every_key_then_rejected_and_no_key_is_blamed(harness):
    # Another key may sit behind another provider that serves the model: each is asked once.
    with pytest.raises(RequestRejected) as caught:
        await harness.client.chat(HELLO, operation="t", model="gpt-9-imaginary")
    assert "gpt-9-imaginary" in str(caught.value) and caught.value.status == 404
    assert caught.value.model_unserved
    events = harness.events()
    assert {(e.outcome, e.error_code, e.model) for e in events} == {("bad_request", "404 model_not_found",
                                                                     "gpt-9-imaginary")}
    assert [harness.sent(k) for k in ("k1", "k2", "k3")] == [1, 1, 1]
    assert all(status(harness, k) is Status.FRESH for k in ("k1", "k2", "k3"))


@pytest.mark.parametrize("messages, kwargs, says", [
    ([], {}, "'messages'"),
    ([{"content": "no role"}], {}, "messages[0].role"),
    ("just a string", {}, "expected an array"),
    (HELLO, {"max_tokens": -5}, "max_completion_tokens"),
])
async def test_bad_input_is_rejected_with_a_clear_error(harness, messages, kwargs, says):
    with pytest.raises(RequestRejected) as caught:
        await harness.client.chat(messages, operation="t", **kwargs)
    assert says in str(caught.value) and str(caught.value).startswith("The AI service rejected the request: ")
    (event,) = harness.events()
    assert event.outcome == "bad_request" and event.error_code.startswith("400")
    assert harness.key("k1").errors_today == 1 and harness.key("k1").used_today == 0


async def test_a_key_with_a_bad_base_url_is_recorded_and_skipped(sqlite_db, sqlite_url, sim):
    bad = {1: "http://127.0.0.1:9/v1", 2: sim.base_url.removesuffix("/v1")}
    h = await open_harness(sim, sqlite_url, base_urls=bad)
    try:
        result = await h.client.chat(HELLO, operation="t")
        assert result.key_label == "k3"
        outcomes = [(e.key.label, e.outcome, e.error_code) for e in h.events()]
        assert outcomes[0] == ("k1", "connection_error", "connection error")
        # A 404 from the server (its path is wrong): misconfigured, taken out until fixed.
        assert ("k2", "misconfigured", "misconfigured: 404 not_found at the base_url") in outcomes
        assert outcomes[-1][:2] == ("k3", "ok")
        assert status(h, "k1") is Status.FRESH and status(h, "k2") is Status.INVALID
        assert h.key("k2").invalid_reason.startswith("misconfigured")
    finally:
        await close_harness(h)


async def test_follows_the_workers_ranking_while_a_worker_is_alive(harness, caplog):
    ids = {label: harness.key(label).id for label in ("k1", "k2", "k3")}
    KeyRanking.create(generation=1, key_ids=json.dumps([ids["k1"]]), policy="sticky", published_by="w")
    KeyRanking.create(generation=2, key_ids=json.dumps([ids["k3"], ids["k1"]]), policy="sticky",
                      published_by="w")
    beat("worker", "w1")
    caplog.set_level(logging.INFO, logger="tokenpool")
    assert (await harness.client.chat(HELLO, operation="t")).key_label == "k3"
    harness.sim.script("k3", Fault.quota())
    assert (await harness.client.chat(HELLO, operation="t")).key_label == "k1"   # next in the ranking
    assert harness.sent("k2") == 0
    assert not [r for r in caplog.records if r.name == "tokenpool.selection"]
    beat("worker", "w1", now=utcnow() - dt.timedelta(minutes=5))              # the worker died
    for _ in range(2):
        assert (await harness.client.chat(HELLO, operation="t")).key_label == "k1"
    warnings = [r for r in caplog.records if r.name == "tokenpool.selection" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "config order" in warnings[0].getMessage()


async def test_cached_and_reasoning_tokens_are_recorded(harness):
    system = {"role": "system", "content": "You are terse. " + "Context line. " * 400}
    first = await harness.client.chat([system, {"role": "user", "content": "one"}], operation="t")
    second = await harness.client.chat([system, {"role": "user", "content": "two"}], operation="t")
    assert first.cached_tokens == 0
    assert second.cached_tokens >= 1024 and second.cached_tokens % 128 == 0
    assert second.input_tokens > second.cached_tokens
    reasoning = await harness.client.chat(HELLO, operation="t", model="o4-mini")
    assert reasoning.reasoning_tokens > 0 and reasoning.output_tokens > reasoning.reasoning_tokens
    events = harness.events()
    assert [e.cached_tokens for e in events] == [0, second.cached_tokens, 0]
    assert events[2].reasoning_tokens == reasoning.reasoning_tokens
    (rollup_4o,) = DailyRollup.select().where(DailyRollup.model == "gpt-4o-mini")
    assert rollup_4o.cached_tokens == second.cached_tokens
    # Cached input is cheaper: the second call costs less than the first despite a longer prompt.
    assert second.cost_nanousd < first.cost_nanousd


async def test_max_tokens_is_passed_on(harness):
    result = await harness.client.chat(HELLO, operation="t", max_tokens=3)
    assert result.output_tokens == 3 and result.finish_reason == "length"


async def test_console_line_shows_the_masked_key_and_never_the_secret(harness, caplog):
    caplog.set_level(logging.DEBUG)
    harness.sim.script("k1", Fault.rate_limit(5))
    result = await harness.client.chat(HELLO, operation="autoreply")
    lines = [r.getMessage() for r in caplog.records if r.name == "tokenpool.calls"]
    assert lines[0].startswith("autoreply | gpt-4o-mini | k1 sk-…0001 | in 0 (cached 0) out 0 | $0.000000 | ")
    assert lines[0].endswith("ms | rate_limited: 429 rate_limit_exceeded")
    assert lines[1].startswith(f"autoreply | gpt-4o-mini | k2 sk-…0002 | in {result.input_tokens} (cached 0) "
                               f"out {result.output_tokens} | $0.0000")
    assert lines[1].endswith(f"| {harness.events()[-1].duration_ms} ms | ok")
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert all(secret(i) not in everything for i in (1, 2, 3))


async def test_cancelled_call_is_recorded_as_interrupted_estimate(harness):
    harness.sim.script("k1", Fault.slow(3600))           # cancelled by the test, not answered
    task = asyncio.create_task(harness.client.chat(HELLO, operation="t"))
    while harness.sent("k1") == 0:                       # the request is at the provider
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (event,) = harness.events()
    assert (event.outcome, event.estimated, event.output_tokens) == ("interrupted", True, 0)
    assert event.input_tokens > 0
    assert UsageEvent.select().count() == 1


async def test_warm_up_sends_nothing_records_nothing_and_leaves_the_first_call_normal(harness, caplog):
    other = Accountant("other")               # books with something in them, written by another bot
    other.record(CallRecord(key_id=harness.key("k1").id, bot="other", operation="before", model="gpt-4o-mini",
                            input_tokens=10, output_tokens=5, chat_id=5))
    other.close()
    beat("worker", "w1")                      # a live worker's ranking: selection runs its full path
    KeyRanking.create(generation=1, key_ids=json.dumps([harness.key("k2").id]), policy="sticky", published_by="w1")
    books = _books()
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    await harness.client.warm_up()
    assert [harness.sent(label) for label in ("k1", "k2", "k3")] == [0, 0, 0]
    assert _books() == books                            # the rehearsed booking was rolled back
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if "skipped" in r.getMessage() or "cut short" in r.getMessage()]
    # What it promises: the database thread's connection is open and outside any transaction...
    db_state = await harness.accountant.run(lambda: (database.obj.is_closed(), database.obj.in_transaction()))
    assert db_state == (False, False)
    # What openai would do at the first request is done: the platform for its headers is known.
    clients = harness.client.failover.dialect._clients.values()
    assert len(clients) == 3 and all(getattr(c, "_platform", None) is not None for c in clients)
    # ...and the first call runs no query the warm-up did not (the key's anchor is known):
    # peewee logs every statement it runs (the booking's, run on their cursor, aside).
    warm_queries = {r.msg[0] for r in caplog.records if r.name == "peewee"}
    caplog.clear()
    result = await harness.client.chat(HELLO, operation="first", chat_id=5)
    first_queries = {r.msg[0] for r in caplog.records if r.name == "peewee"}
    assert first_queries and first_queries <= warm_queries
    event = harness.events()[-1]
    assert (event.operation, event.outcome, event.input_tokens) == ("first", "ok", result.input_tokens)
    assert len(harness.events()) == 2


async def test_warm_up_rehearses_whole_calls_without_a_trace(harness, caplog):
    """On SQLite, `chat` itself is rehearsed at start: through the real key's row, against a
    canned server of our own, in a transaction rolled back, without a console line."""
    books = _books()
    caplog.set_level(logging.DEBUG)
    await harness.client.warm_up()
    assert any(r.getMessage().startswith(f"warm-up: {REHEARSALS} whole calls rehearsed") for r in caplog.records)
    assert [harness.sent(label) for label in ("k1", "k2", "k3")] == [0, 0, 0]
    assert _books() == books
    assert not [r for r in caplog.records if r.name.startswith("tokenpool.calls")]
    assert harness.client.failover.calls_log.name == "tokenpool.calls"     # the real one still logs
    result = await harness.client.chat(HELLO, operation="first")
    assert [r.getMessage().split(" | ")[0] for r in caplog.records if r.name == "tokenpool.calls"] == ["first"]
    assert harness.events()[-1].input_tokens == result.input_tokens


async def test_the_whole_call_rehearsal_gives_way_at_once_to_another_connection_writing(harness, sqlite_url):
    """Its connection never waits for a lock: the rehearsal is cut short (warm_up logs it and
    goes on), nothing is sent, nothing kept, and the first call is served as usual."""
    books = _books()
    other = peewee.SqliteDatabase(sqlite_url.removeprefix("sqlite:///"))
    other.execute_sql("BEGIN IMMEDIATE")                 # another process's write lock
    try:
        with pytest.raises(peewee.OperationalError, match="locked"):
            await harness.client._rehearse_whole_calls()
    finally:
        other.execute_sql("ROLLBACK")
        other.close()
    assert [harness.sent(label) for label in ("k1", "k2", "k3")] == [0, 0, 0]
    assert _books() == books
    await harness.client.chat(HELLO, operation="first")
    assert len(harness.events()) == 1


async def test_warm_up_never_raises_and_logs_no_error_when_the_database_is_gone(harness, caplog, sqlite_url):
    os.remove(sqlite_url.removeprefix("sqlite:///"))
    caplog.set_level(logging.INFO)
    await harness.client.warm_up()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("warm-up at start cut short" in r.getMessage() for r in caplog.records)


async def test_the_local_rehearsal_reads_its_canned_answer_through_the_dialect(harness):
    from shared.ai.rehearsal import rehearse_chat
    answer = await rehearse_chat(harness.client.failover.dialect)
    assert (answer.text, answer.finish_reason, answer.usage) == ("ok", "stop", Usage(1, 0, 1, 0))
    assert [harness.sent(label) for label in ("k1", "k2", "k3")] == [0, 0, 0]


def _books():
    return ([tuple(r) for r in ApiKey.select().order_by(ApiKey.id).tuples()],
            [tuple(r) for r in UsageEvent.select().order_by(UsageEvent.id).tuples()],
            [tuple(r) for r in DailyRollup.select().order_by(DailyRollup.id).tuples()],
            [tuple(r) for r in ChatRollup.select().order_by(ChatRollup.id).tuples()])


async def test_warm_up_opens_the_in_flight_file_before_the_first_call(harness, tmp_path):
    from shared.ai.client import TrackedClient
    from shared.core.inflight import InFlight
    inflight = InFlight(tmp_path / "data", "main")
    accountant = Accountant("main", inflight=inflight)
    client = TrackedClient(harness.config, harness.ring, accountant)
    try:
        await client.warm_up()
        assert inflight.path.exists()
        assert inflight.path.stat().st_size == 0     # rehearsed, never written: a crash now books nothing
        await client.chat(HELLO, operation="first")
    finally:
        await client.aclose()
        await accountant.run(database.close)
        accountant.close()
        inflight.close()
    assert not inflight.path.exists()


async def test_warm_up_warns_when_enforced_cost_budgets_cannot_price_a_model(sqlite_db, sqlite_url, sim, caplog):
    from tests.shared.client_fixtures import close_harness, open_harness
    h = await open_harness(sim, sqlite_url, autoreply={"models": ["gpt-4o-mini", "local-llama-3"]},
                           budgets={"daily_cost_usd": 5, "enforce": True})
    try:
        caplog.set_level(logging.WARNING)
        await h.client.warm_up()
    finally:
        await close_harness(h)
    budget_lines = [r.getMessage() for r in caplog.records if "enforced cost budgets" in r.getMessage()]
    assert budget_lines == ['enforced cost budgets hold calls of local-llama-3 at $0 (no price known), so cannot '
                            'stop them: add [pricing.overrides."local-llama-3"] with input_per_mtok and '
                            'output_per_mtok to the config']
