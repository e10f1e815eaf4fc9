"""The exactness check: every counter equals the sum of the events behind it."""
from peewee import fn

from shared.core.models import ApiKey, DailyRollup, UsageEvent

SUMMED = ("input_tokens", "cached_tokens", "output_tokens", "total_tokens", "cost_nanousd")


def assert_books_exact():
    """Compare key counters (today and lifetime) and every rollup with the raw events."""
    for key in ApiKey.select():
        events = UsageEvent.select().where(UsageEvent.key == key.id)
        lifetime = events.select(fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.total_tokens),
                                 fn.SUM(UsageEvent.cost_nanousd)).tuples().get()
        assert (key.total_calls, key.total_tokens, key.total_cost_nanousd) == \
            tuple(int(v or 0) for v in lifetime), key.label
        window = events.where(UsageEvent.window_start == key.window_start)
        today = window.select(fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.total_tokens),
                              fn.SUM(UsageEvent.input_tokens), fn.SUM(UsageEvent.cached_tokens),
                              fn.SUM(UsageEvent.output_tokens),
                              fn.SUM(UsageEvent.cost_nanousd)).tuples().get()
        assert (key.calls_today, key.used_today, key.input_today, key.cached_today, key.output_today,
                key.cost_today_nanousd) == tuple(int(v or 0) for v in today), key.label
        rate_hits = window.where(UsageEvent.outcome == "rate_limited").count()
        assert key.rate_hits_today == rate_hits, key.label
    grouped = {}
    for e in UsageEvent.select():
        k = (e.at.date(), e.key_id, e.bot, e.model, e.operation)
        row = grouped.setdefault(k, [0] * (len(SUMMED) + 1))
        row[0] += 1
        for i, name in enumerate(SUMMED):
            row[i + 1] += getattr(e, name)
    rollups = {(r.day, r.key_id, r.bot, r.model, r.operation): [r.calls] + [getattr(r, n) for n in SUMMED]
               for r in DailyRollup.select()}
    assert rollups == grouped
