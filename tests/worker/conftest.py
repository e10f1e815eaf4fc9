"""Helpers for worker tests: tickers on their own threads (own database sessions), calls."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import json

import pytest

from shared.core.accounting import CallRecord, Outcome, record_call
from shared.core.db import database
from shared.core.models import Alert, ApiKey, KeyRanking
from shared.core.pricing import Pricer
from worker.tick import Ticker

T0 = dt.datetime(2026, 3, 1, 9, 30, 15, tzinfo=dt.UTC)


class ThreadedTicker:
    """A Ticker on a thread of its own, hence with its own database connection (on
    PostgreSQL its own session and advisory locks), as if it were another process."""

    def __init__(self, config, name: str):
        self.ticker = Ticker(config, name=name, holder=name)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def run(self, fn, *args, **kwargs):
        return self._thread.submit(fn, *args, **kwargs).result()

    def tick(self):
        return self.run(self.ticker.tick)

    def close(self):
        self.run(lambda: database.obj.close())
        self._thread.shutdown()


@pytest.fixture
def tickers():
    made = []

    def make(config, name):
        made.append(ThreadedTicker(config, name))
        return made[-1]

    yield make
    for ticker in made:
        ticker.close()


def record(key_id: int, tokens: int = 0, outcome: Outcome = Outcome.OK, **kw):
    """Record one call on `key_id` now: `tokens` split 60/40 into input and output."""
    anchor = ApiKey.get_by_id(key_id).window_anchor
    call = CallRecord(key_id=key_id, bot="b1", operation="autoreply", model="gpt-4o-mini", outcome=outcome,
                      input_tokens=tokens * 6 // 10, output_tokens=tokens - tokens * 6 // 10, **kw)
    return record_call(call, anchor=anchor, pricer=Pricer())


def key(label: str) -> ApiKey:
    return ApiKey.get(ApiKey.label == label)


def latest_ranking() -> list[int]:
    row = KeyRanking.select().order_by(KeyRanking.generation.desc()).first()
    return json.loads(row.key_ids) if row else []


def alert_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for alert in Alert.select():
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    return counts
