"""Calls that hold (a provider allowance, enforced budgets, a key's own limit) on SQLite are
reserved, and booked with their hold settled, on the event loop's own thread and connection
(DatabaseExecutor.run_inline) when nothing waits; a write lock held elsewhere sends that work
to the database thread, which waits for it. PostgreSQL and MySQL do it all on the thread. The
books and the holds are exact either way, and the start's rehearsal of a holding call keeps
nothing."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import threading

import pytest

from shared.ai import client as client_module
from shared.ai import failover as failover_module
from shared.ai.rehearsal import REHEARSALS
from shared.core import accounting
from shared.core.accounting import Accountant, CallRecord
from shared.core.allowances import allowance_usage, reserve, settle, sync_allowances
from shared.core.db import database
from shared.core.keys import sync_keys
from shared.core.models import (
    AllowanceHold,
    AllowanceWindow,
    ApiKey,
    BudgetGate,
    BudgetHold,
    DailyRollup,
    KeyHold,
    UsageEvent,
    utcnow,
)
from shared.core.pricing import Pricer
from shared.tools.simulator import Simulator
from tests.conftest import make_config
from tests.shared.client_fixtures import close_harness, open_harness

HELLO = [{"role": "user", "content": "hello there"}]
MINI = ["gpt-4o-mini", "gpt-4.1-mini"]
# Every kind of hold at once: an allowance, the pool's enforced budgets, and the key's own
# limit (held once fewer than pool.low_threshold = 500,000 tokens are left: 400,000 here).
HOLDING = {"allowances": [{"name": "org-mini", "tokens": 2_500_000, "models": MINI}],
           "key_settings": {1: {"allowances": ["org-mini"]}},
           "budgets": {"daily_cost_usd": 1000, "monthly_cost_usd": 20000, "enforce": True},
           "limit": 400_000, "n": 1}


def spy_on(monkeypatch, seen: list) -> None:
    """Note which thread, on which connection (None: the thread's own), reserved and settled."""
    def spying(fn, what):
        def spy(*args, db=None, **kwargs):
            seen.append((what, threading.current_thread().name, db))
            return fn(*args, **kwargs) if db is None else fn(*args, db=db, **kwargs)
        return spy
    monkeypatch.setattr(failover_module, "reserve", spying(reserve, "reserve"))
    monkeypatch.setattr(client_module, "reserve", spying(reserve, "rehearsed reserve"), raising=False)
    monkeypatch.setattr(accounting, "settle", spying(settle, "settle"))


def on_the_loop(seen: list, what: str) -> list[bool]:
    """For each `what` seen: done on the loop's thread, on a connection other than the thread's?"""
    loop = threading.current_thread().name
    return [thread == loop and not the_threads(db) for w, thread, db in seen if w == what]


def the_threads(db) -> bool:
    """Whether `db` is the database thread's connection (given as None, or as itself)."""
    return db is None or db is database.obj


def on_the_thread(entry: tuple) -> bool:
    _what, thread, db = entry
    return thread.startswith("database") and the_threads(db)


@contextlib.asynccontextmanager
async def a_holding_harness_and_a_blocker(url: str):
    """A harness with every kind of hold whose inline connection is open (one call made), and
    a second connection to the SQLite file that can take the write lock, as another process would."""
    blocker = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
    async with Simulator() as sim:
        h = await open_harness(sim, url, **HOLDING)
        try:
            await h.client.chat(HELLO, operation="t", model="gpt-4o-mini")
            yield h, blocker
        finally:
            blocker.close()
            await close_harness(h)


def books_are_exact(calls: int) -> None:
    """Every hold settled or dropped, the allowance's window, the key's counters and the
    rollups equal to the events booked."""
    events = list(UsageEvent.select())
    assert len(events) == calls
    tokens = sum(e.total_tokens for e in events)
    (usage,) = allowance_usage(utcnow(), ["org-mini"])
    assert (usage.tokens_used, usage.requests_used) == (tokens, calls)
    assert (usage.tokens_held, usage.requests_held) == (0, 0)
    assert AllowanceHold.select().count() == KeyHold.select().count() == BudgetHold.select().count() == 0
    key = ApiKey.get()
    assert (key.used_today, key.calls_today, key.total_cost_nanousd) == (tokens, calls,
                                                                         sum(e.cost_nanousd for e in events))
    rollup = DailyRollup.get()
    assert (rollup.total_tokens, rollup.calls) == (tokens, calls)


async def test_a_holding_call_is_reserved_and_booked_on_the_loops_thread_only_on_sqlite(db, db_url, monkeypatch):
    seen: list = []
    spy_on(monkeypatch, seen)
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, **HOLDING)
        try:
            for _ in range(3):
                await h.client.chat(HELLO, operation="t", model="gpt-4o-mini")
        finally:
            await close_harness(h)
    assert [w for w, _, _ in seen] == ["reserve", "settle"] * 3
    if db_url.startswith("sqlite"):
        assert on_the_loop(seen, "reserve") == on_the_loop(seen, "settle") == [True] * 3
    else:       # the thread's own connection, on the thread
        assert all(on_the_thread(entry) for entry in seen)
    books_are_exact(3)


async def test_a_write_lock_held_elsewhere_sends_the_reservation_to_the_thread_which_waits(
        sqlite_db, sqlite_url, monkeypatch):
    seen: list = []
    spy_on(monkeypatch, seen)
    async with a_holding_harness_and_a_blocker(sqlite_url) as (h, blocker):
        blocker.execute("BEGIN IMMEDIATE")                                # another process's write, say
        call = asyncio.create_task(h.client.chat(HELLO, operation="t", model="gpt-4o-mini"))
        while len(seen) < 4 and not call.done():    # the inline try met the lock at once; the thread waits
            await asyncio.sleep(0.01)               # (the loop goes on meanwhile)
        assert [w for w, _, _ in seen] == ["reserve", "settle", "reserve", "reserve"]
        assert on_the_loop(seen, "reserve") == [True, True, False]
        assert on_the_thread(seen[3])
        await asyncio.sleep(0.05)
        assert not call.done() and h.sent("k1") == 1         # nothing sent while it waits
        blocker.execute("COMMIT")
        await call
    assert [w for w, _, _ in seen] == ["reserve", "settle", "reserve", "reserve", "settle"]
    assert on_the_loop(seen, "settle") == [True, True]      # nothing waits by then: booked on the loop
    books_are_exact(2)


async def test_a_write_lock_held_elsewhere_sends_the_booking_and_its_settling_to_the_thread(
        sqlite_db, sqlite_url, monkeypatch):
    seen: list = []
    spy_on(monkeypatch, seen)
    async with a_holding_harness_and_a_blocker(sqlite_url) as (h, blocker):
        (usage,) = allowance_usage(utcnow(), ["org-mini"])
        hold = reserve([usage.ref], 500, utcnow(), dt.timedelta(minutes=10), h.key("k1").id)
        booked: list[str] = []
        record_once = h.accountant.record_once

        def booking(call, db=None):
            booked.append(threading.current_thread().name)
            return record_once(call, db)
        monkeypatch.setattr(h.accountant, "record_once", booking)
        blocker.execute("BEGIN IMMEDIATE")
        call = CallRecord(key_id=h.key("k1").id, bot=h.config.bot.name, operation="t", model="gpt-4o-mini",
                          input_tokens=120, output_tokens=30, hold=hold)
        recording = asyncio.create_task(h.accountant.arecord(call))
        while len(booked) < 2 and not recording.done():
            await asyncio.sleep(0.01)
        assert booked[0] == threading.current_thread().name and booked[1].startswith("database")
        assert not recording.done()
        blocker.execute("COMMIT")
        recorded = await recording
    assert not recorded.duplicate and not recorded.journaled
    assert [w for w, _, _ in seen] == ["reserve", "settle", "settle"]     # settled once, by the thread
    assert on_the_thread(seen[2])
    books_are_exact(2)


async def test_warm_up_rehearses_a_holding_call_on_both_connections_and_keeps_nothing(db, db_url, monkeypatch,
                                                                                      tmp_path):
    from shared.core.inflight import InFlight
    seen: list = []
    spy_on(monkeypatch, seen)
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, **HOLDING)
        inflight = InFlight(tmp_path / "data", "main")
        accountant = Accountant(h.config.bot.name, Pricer(h.config.pricing), inflight=inflight)
        client = client_module.TrackedClient(h.config, h.ring, accountant)
        try:
            await client.warm_up()
            assert h.sent("k1") == 0
            assert inflight.path.stat().st_size == 0
            for model in (AllowanceHold, AllowanceWindow, KeyHold, BudgetGate, BudgetHold, UsageEvent, DailyRollup):
                assert model.select().count() == 0, model      # rolled back: not even the rows made on the way
            assert ApiKey.get().total_calls == 0
            rehearsed = [(thread, db) for w, thread, db in seen if w == "rehearsed reserve"]
            on_thread = [thread for thread, db in rehearsed if thread.startswith("database")]
            assert len(on_thread) == REHEARSALS
            assert len(rehearsed) == REHEARSALS * (2 if db_url.startswith("sqlite") else 1)
            # on SQLite, whole calls were rehearsed too (TrackedClient._rehearse_whole_calls), on
            # the loop's thread, on a connection of their own, and rolled back with the rest
            whole = [(thread, db) for w, thread, db in seen if w == "reserve"]
            assert len(whole) == (REHEARSALS if db_url.startswith("sqlite") else 0)
            assert all(thread == threading.current_thread().name and not the_threads(db) for thread, db in whole)
            # each rehearsal settled its hold in the booking, as a real call does
            assert sum(w == "settle" for w, _, _ in seen) == len(rehearsed) + len(whole)
            seen.clear()
            await client.chat(HELLO, operation="first", model="gpt-4o-mini")
        finally:
            await client.aclose()
            await accountant.run(database.close)
            accountant.close()
            await close_harness(h)
    assert [w for w, _, _ in seen] == ["reserve", "settle"]
    books_are_exact(1)


def test_a_holding_rehearsal_is_refused_inside_a_transaction_and_skipped_when_there_is_no_room(
        sqlite_db, sqlite_url):
    from shared.core.accounting import rehearse_holding_call
    config = make_config(1, url=sqlite_url, allowances=[{"name": "tiny", "tokens": 10}])
    key_id = sync_keys(config).ids()[0]
    (ref,) = sync_allowances(config).values()
    anchor = ApiKey.get_by_id(key_id).window_anchor

    def holding(tokens):
        return lambda conn: reserve([ref], tokens, utcnow(), dt.timedelta(minutes=1), db=conn)

    with sqlite_db.atomic(), pytest.raises(RuntimeError):
        rehearse_holding_call(key_id, anchor, Pricer(), holding(5))
    assert rehearse_holding_call(key_id, anchor, Pricer(), holding(5), times=3)
    assert not rehearse_holding_call(key_id, anchor, Pricer(), holding(50))       # AllowanceFull: nothing held
    assert not sqlite_db.in_transaction()
    assert AllowanceHold.select().count() == AllowanceWindow.select().count() == UsageEvent.select().count() == 0
    assert ApiKey.get_by_id(key_id).total_calls == 0
