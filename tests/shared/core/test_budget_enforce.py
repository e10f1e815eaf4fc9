"""Budgets that hold ([budgets] enforce = true), on every backend: a call whose worst case
would cross a budget is refused before it is sent, reservations count, the owner lifts it."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from shared.ai.client import BudgetExceeded
from shared.core.accounting import CallRecord, record_call
from shared.core.allowances import reserve
from shared.core.budget_holds import BudgetFull, enforced_limits, lift
from shared.core.db import write_transaction
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, BudgetHold, utcnow
from shared.core.pricing import Pricer
from shared.tools import cli
from shared.tools.simulator import Simulator
from tests.conftest import make_config
from tests.shared.client_fixtures import close_harness, open_harness

TTL = dt.timedelta(minutes=10)
PRICES = {"gpt-4o-mini": {"input_per_mtok": 1000, "output_per_mtok": 1000}}     # $0.001 a token


def _pool(db_url, **budgets):
    config = make_config(2, url=db_url, budgets={"enforce": True, **budgets}, pricing={"overrides": PRICES})
    ring = sync_keys(config)
    return config, ring.ids()


def _book(config, key_id: int, tokens: int, now: dt.datetime, hold=None) -> None:
    anchor = ApiKey.get_by_id(key_id).window_anchor
    record_call(CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=tokens,
                           at=now, hold=hold), anchor=anchor, pricer=Pricer(config.pricing))


def test_a_call_whose_worst_case_crosses_the_pool_budget_is_refused(db, db_url):
    config, (k1, k2) = _pool(db_url, daily_tokens=1_000)
    now = utcnow()
    _book(config, k1, 800, now)
    limits = enforced_limits(config, k2, "k2")
    with pytest.raises(BudgetFull, match="daily tokens budget of the pool") as refused:
        reserve([], 300, now, TTL, budgets=limits)
    assert refused.value.pool_wide and refused.value.frees_up_at.date() == now.date() + dt.timedelta(days=1)
    hold = reserve([], 150, now, TTL, budgets=limits)
    with pytest.raises(BudgetFull):                       # 800 booked + 150 held + 150 > 1,000
        reserve([], 150, now, TTL, budgets=limits)
    _book(config, k2, 40, now, hold)                      # settled: 840 booked, the hold gone
    assert BudgetHold.select().count() == 0
    reserve([], 150, now, TTL, budgets=limits)


def test_cost_budgets_and_a_key_budget_leave_other_keys_alone(db, db_url):
    config, (k1, k2) = _pool(db_url, daily_cost_usd="0.5", keys={"k1": {"daily_tokens": 100}})
    now = utcnow()
    _book(config, k1, 90, now)                            # $0.09, and 90 of k1's 100 tokens
    with pytest.raises(BudgetFull, match="key k1") as refused:
        reserve([], 20, now, TTL, budgets=enforced_limits(config, k1, "k1"), cost_nanousd=20_000_000)
    assert not refused.value.pool_wide
    reserve([], 20, now, TTL, budgets=enforced_limits(config, k2, "k2"), cost_nanousd=20_000_000)
    with pytest.raises(BudgetFull, match="daily cost budget of the pool"):
        reserve([], 10, now, TTL, budgets=enforced_limits(config, k2, "k2"), cost_nanousd=400_000_000)


def test_the_owner_lifts_a_crossed_budget_until_its_period_ends(db, db_url):
    config, (k1, _k2) = _pool(db_url, monthly_tokens=1_000)
    now = utcnow()
    _book(config, k1, 1_000, now)
    limits = enforced_limits(config, k1, "k1")
    with pytest.raises(BudgetFull):
        reserve([], 1, now, TTL, budgets=limits)
    with write_transaction():
        lift(now)
    reserve([], 500, now, TTL, budgets=limits)
    next_month = (now.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=0)
    _book(config, k1, 1_000, next_month)
    with pytest.raises(BudgetFull):                       # a lift ends with its period
        reserve([], 1, next_month, TTL, budgets=limits)


def test_enforce_off_holds_nothing(db, db_url):
    config = make_config(2, url=db_url, budgets={"daily_tokens": 10})
    assert enforced_limits(config, 1, "k1") == []


async def test_clients_racing_an_enforced_budget_stop_before_sending(db, db_url):
    """Four clients with their own connections race the last tokens of the pool's budget:
    the total stays within it, and the refused calls never reach the provider."""
    limit, room = 200_000, 2_000
    async with Simulator(latency=0.01) as sim:
        harnesses = [await open_harness(sim, db_url, budgets={"enforce": True, "daily_tokens": limit})
                     for _ in range(4)]
        try:
            _book(harnesses[0].config, harnesses[0].ring.ids()[0], limit - room, utcnow())
            errors = []

            async def drain(h, i):
                served = 0
                while True:
                    try:
                        await h.client.chat([{"role": "user", "content": f"racer {i} call {served}"}],
                                            operation="race", model="gpt-4o-mini", max_tokens=100)
                    except BudgetExceeded as exc:
                        errors.append(exc)
                        return served
                    served += 1

            served = await asyncio.gather(*[drain(h, i) for i, h in enumerate(harnesses)])
            sent = sum(sim.requests_for(label) for label in ("k1", "k2", "k3"))
        finally:
            for h in harnesses:
                await close_harness(h)
    from shared.reports.queries import day_totals
    total = day_totals(utcnow().date(), utcnow().date()).total_tokens
    assert sum(served) > 3 and sent == sum(served)        # refused calls were never sent
    assert total <= limit
    assert all("budget" in str(e) and e.dedupe_key.startswith("budget_enforced:pool:day:tokens:") for e in errors)


def test_tokenpool_budget_lift(db, db_url, tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n[budgets]\nenforce = true\ndaily_tokens = 10\n'
                    '[[keys]]\nlabel = "k1"\napi_key = "sk-lift-' + "x" * 24 + '"\ndaily_token_limit = 1000\n')
    assert cli.main(["--config", str(path), "budget", "lift", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"period": "day"' in out and '"period": "month"' in out
    from shared.core.budget_holds import lifted_periods
    assert len(lifted_periods(utcnow())) == 2
