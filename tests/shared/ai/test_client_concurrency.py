"""50 concurrent requests over 3 keys while one key dies and one is rate-limited: every
request is answered and the books are exact afterwards, on every backend."""
from __future__ import annotations

import asyncio
import collections

import peewee as pw

from shared.core.models import ApiKey, DailyRollup, UsageEvent, utcnow
from shared.core.status import Status, key_status
from shared.tools.simulator import Fault, Simulator
from tests.shared.client_fixtures import close_harness, open_harness

REQUESTS = 50
EVENT_SUMS = {"calls": pw.fn.COUNT(UsageEvent.id), "tokens": pw.fn.SUM(UsageEvent.total_tokens),
              "input": pw.fn.SUM(UsageEvent.input_tokens), "cached": pw.fn.SUM(UsageEvent.cached_tokens),
              "output": pw.fn.SUM(UsageEvent.output_tokens), "cost": pw.fn.SUM(UsageEvent.cost_nanousd)}


def event_sums(key_id: int, outcome: str | None = None) -> dict:
    query = UsageEvent.select(*[f.alias(n) for n, f in EVENT_SUMS.items()]).where(UsageEvent.key == key_id)
    if outcome is not None:
        query = query.where(UsageEvent.outcome == outcome)
    row = query.dicts().get()
    return {name: int(value or 0) for name, value in row.items()}


async def staggered(client, i, messages):
    """Requests start 4 ms apart and take 20 ms: about five are in flight at any time."""
    await asyncio.sleep(0.004 * i)
    return await client.chat(messages, operation="load", chat_id=i)


async def test_fifty_concurrent_requests_with_a_key_dying_keep_the_books_exact(db, db_url):
    async with Simulator(latency=0.02) as sim:
        # No clock in the story: a loaded machine may take minutes (the timeout is a hang guard only).
        h = await open_harness(sim, db_url, client={"server_error_retries": 1, "timeout_seconds": 900})
        try:
            # k1 serves 12 requests, then its quota is gone; k2 serves 5, then stays rate-limited (for a
            # day: longer than any test run);
            # k3 stumbles once. Scripted by count, so the story holds however the requests overlap.
            sim.script("k1", *[Fault.ok()] * 12)
            sim.set_fault("k1", Fault.quota())
            sim.script("k2", *[Fault.ok()] * 5)
            sim.set_fault("k2", Fault.rate_limit(86_400))
            sim.script("k3", Fault.server_error())
            prompts = [[{"role": "user", "content": f"message number {i}"}] for i in range(REQUESTS)]
            results = await asyncio.gather(*[staggered(h.client, i, p) for i, p in enumerate(prompts)])
            # Once the deaths are booked, no request reaches the dead or cooling key again.
            sent = (sim.requests_for("k1"), sim.requests_for("k2"))
            more = await asyncio.gather(*[h.client.chat(p, operation="load") for p in prompts[:5]])
            assert {r.key_label for r in more} == {"k3"}
            assert (sim.requests_for("k1"), sim.requests_for("k2")) == sent
        finally:
            await close_harness(h)

    assert len(results) == REQUESTS and len({r.call_id for r in results}) == REQUESTS
    assert collections.Counter(r.key_label for r in results) == {"k1": 12, "k2": 5, "k3": REQUESTS - 17}
    now = utcnow()
    statuses = {k.label: key_status(k, now, h.config.pool.low_threshold) for k in ApiKey.select()}
    assert statuses["k1"] is Status.EXHAUSTED and statuses["k2"] is Status.RATE_LIMITED
    assert UsageEvent.select().where(UsageEvent.outcome == "ok").count() == REQUESTS + 5

    for key in ApiKey.select():
        events = event_sums(key.id)
        ok = event_sums(key.id, "ok")
        served = sim.stats(key.label)
        # Every request the simulator received is one event; every token it served is booked.
        assert served.requests == events["calls"], key.label
        assert served.ok == ok["calls"] and served.used == ok["tokens"] == events["tokens"], key.label
        # The key's counters equal the sums of its events, exactly.
        assert (key.calls_today, key.used_today, key.input_today, key.cached_today, key.output_today,
                key.cost_today_nanousd) == (events["calls"], events["tokens"], events["input"], events["cached"],
                                            events["output"], events["cost"]), key.label
        assert (key.total_calls, key.total_tokens, key.total_cost_nanousd) == \
            (events["calls"], events["tokens"], events["cost"]), key.label
        outcomes = {o: UsageEvent.select().where(UsageEvent.key == key.id, UsageEvent.outcome == o).count()
                    for o in ("rate_limited", "server_error", "quota_exhausted")}
        assert key.rate_hits_today == outcomes["rate_limited"]
        assert key.errors_today == outcomes["server_error"] + outcomes["quota_exhausted"]
        rollup = (DailyRollup.select(pw.fn.SUM(DailyRollup.calls), pw.fn.SUM(DailyRollup.total_tokens),
                                     pw.fn.SUM(DailyRollup.cost_nanousd), pw.fn.SUM(DailyRollup.ok_calls))
                  .where(DailyRollup.key == key.id).tuples().get())
        assert tuple(int(v or 0) for v in rollup) == (events["calls"], events["tokens"], events["cost"],
                                                      ok["calls"]), key.label
