"""Allowances as providers grant them, on every backend: an organization of three keys
sharing one mini and one large pool, requests per day, UTC-midnight / rolling / minute
windows, reservations that expire, model fallback when a family is used up, and eight
clients racing a nearly used allowance without passing it."""
from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import threading
import time
import tomllib
from pathlib import Path

import peewee as pw
import pytest

from shared.ai.client import NoKeyAvailable
from shared.core.allowances import (
    AllowanceFull,
    AllowanceRef,
    allowance_usage,
    members,
    reserve,
    settle,
)
from shared.core.config import parse_config
from shared.core.db import database, write_transaction
from shared.core.models import (
    Allowance,
    AllowanceHold,
    AllowanceWindow,
    UsageEvent,
    utcnow,
)
from shared.core.windows import EPOCH
from shared.reports.queries import stats_snapshot
from shared.reports.render_json_csv import stats_json
from shared.reports.render_telegram import render_stats
from shared.tools import cli
from shared.tools.simulator import Simulator
from tests.backends import fresh_database_url, session_id, waits_for_a_lock
from tests.conftest import open_test_db
from tests.shared.client_fixtures import close_harness, open_harness, race_until_refused, racers

HELLO = [{"role": "user", "content": "hello there"}]
MINI = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano"]
LARGE = ["gpt-4o", "gpt-4.1"]
ORG = [{"name": "org-mini", "tokens": 2_500_000, "models": MINI},
       {"name": "org-large", "tokens": 250_000, "models": LARGE}]
ORG_KEYS = {i: {"allowances": ["org-mini", "org-large"]} for i in (1, 2, 3)}
TTL = dt.timedelta(minutes=10)


def window_row(name: str) -> AllowanceWindow:
    (usage,) = allowance_usage(utcnow(), [name])
    return AllowanceWindow.get((AllowanceWindow.allowance == usage.ref.id)
                               & (AllowanceWindow.window_start == usage.window_start))


def use_up(name: str, leave: int) -> None:
    """Book the allowance's window as used but for `leave` tokens (as other processes would have)."""
    (usage,) = allowance_usage(utcnow(), [name])
    AllowanceWindow.insert(allowance=usage.ref.id, window_start=usage.window_start).on_conflict_ignore().execute()
    AllowanceWindow.update(tokens_used=usage.ref.token_limit - leave).where(
        (AllowanceWindow.allowance == usage.ref.id) & (AllowanceWindow.window_start == usage.window_start)).execute()


def event_tokens(models: list[str]) -> int:
    return int(UsageEvent.select(pw.fn.COALESCE(pw.fn.SUM(UsageEvent.total_tokens), 0))
               .where(UsageEvent.model.in_(models)).scalar())


async def test_an_organization_of_three_keys_shares_one_mini_and_one_large_pool(db, db_url):
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, allowances=ORG, key_settings=ORG_KEYS)
        try:
            org = {u.ref.name: u.ref.id for u in allowance_usage(utcnow())}
            assert sorted(members()[org["org-large"]]) == sorted(h.key(f"k{i}").id for i in (1, 2, 3))
            await h.client.chat(HELLO, operation="t", model="gpt-4o-mini")
            await h.client.chat(HELLO, operation="t", model="gpt-4.1")
            # Each family's pool holds the tokens of its models, whichever key served them.
            assert window_row("org-mini").tokens_used == event_tokens(MINI) > 0
            assert window_row("org-large").tokens_used == event_tokens(LARGE) > 0
            assert (window_row("org-mini").requests_used, window_row("org-large").requests_used) == (1, 1)
            assert AllowanceHold.select().count() == 0           # every hold settled
            use_up("org-large", leave=300)
            sent = sum(sim.requests_by_fingerprint.values())
            with pytest.raises(NoKeyAvailable, match="org-large") as caught:
                await h.client.chat(HELLO, operation="t", model="gpt-4.1", max_tokens=400)
            # Refused by the reservation: no key was sent the call that would have been billed.
            assert sum(sim.requests_by_fingerprint.values()) == sent
            assert caught.value.frees_up_at == allowance_usage(utcnow(), ["org-large"])[0].resets_at
            # The other family still serves, and a small enough call still fits.
            assert (await h.client.chat(HELLO, operation="t", model="gpt-4o-mini")).text
            assert (await h.client.chat(HELLO, operation="t", model="gpt-4o", max_tokens=100)).text
            assert window_row("org-large").tokens_used <= 250_000
        finally:
            await close_harness(h)


async def test_a_model_chain_falls_back_when_a_family_is_used_up(db, db_url):
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, allowances=ORG, key_settings=ORG_KEYS)
        try:
            use_up("org-large", leave=50)
            result = await h.client.chat(HELLO, operation="t", models=["gpt-4.1", "gpt-4.1-mini"])
            assert result.model == "gpt-4.1-mini"
            assert [s.outcome for s in result.steps] == ["allowance_full"] * 3 + ["ok"]
            assert UsageEvent.get().model == "gpt-4.1-mini"
        finally:
            await close_harness(h)


async def test_requests_per_day_send_no_request_past_the_limit(db, db_url):
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, n=2, allowances=[{"name": "free", "requests": 3}],
                               key_settings={1: {"allowances": ["free"]}})
        try:
            labels = [(await h.client.chat(HELLO, operation="t")).key_label for _ in range(5)]
            assert labels == ["k1", "k1", "k1", "k2", "k2"]
            assert sim.requests_for("k1") == 3 and window_row("free").requests_used == 3
        finally:
            await close_harness(h)


def ref(window: str, anchor=EPOCH, tokens=1000, requests=None) -> AllowanceRef:
    row = Allowance.create(name=f"a-{window}-{anchor:%H%M}", window=window, token_limit=tokens,
                           request_limit=requests, anchor=anchor)
    return AllowanceRef(row.id, row.name, window, anchor, tokens, requests)


def spend(refs, tokens, at):
    """A call reserved and settled with exactly its reservation."""
    settle(reserve(refs, tokens, at, TTL), tokens, 1)


def test_a_utc_day_allowance_is_fresh_after_midnight(db):
    day = ref("utc-day")
    late = dt.datetime(2026, 3, 1, 23, 59, 30)
    reserve([day], 1000, late, TTL)
    with pytest.raises(AllowanceFull) as caught:
        reserve([day], 1, late, TTL)
    assert caught.value.frees_up_at == dt.datetime(2026, 3, 2)
    reserve([day], 1000, dt.datetime(2026, 3, 2, 0, 0, 30), TTL)


def test_a_rolling_allowance_renews_24_hours_after_its_anchor_not_at_midnight(db):
    rolling = ref("rolling", anchor=dt.datetime(2026, 3, 1, 10, 30))
    spend([rolling], 1000, dt.datetime(2026, 3, 1, 23, 0))
    with pytest.raises(AllowanceFull):
        reserve([rolling], 1, dt.datetime(2026, 3, 2, 0, 1), TTL)     # past midnight: still the same window
    with pytest.raises(AllowanceFull):
        reserve([rolling], 1, dt.datetime(2026, 3, 2, 10, 29), TTL)
    reserve([rolling], 1000, dt.datetime(2026, 3, 2, 10, 31), TTL)


def test_a_per_minute_allowance_and_all_or_nothing_reservations(db):
    minute = ref("minute", tokens=None, requests=2)
    day = ref("utc-day", tokens=500)
    at = dt.datetime(2026, 3, 1, 12, 0, 5)
    reserve([minute, day], 100, at, TTL)
    reserve([minute, day], 100, at, TTL)
    with pytest.raises(AllowanceFull, match="requests"):
        reserve([minute, day], 100, at, TTL)
    # Refused as a whole: the day allowance did not keep a hold for the refused call.
    assert AllowanceHold.select().where(AllowanceHold.allowance == day.id).count() == 2
    reserve([minute, day], 100, at + dt.timedelta(minutes=1), TTL)


def test_a_crashed_process_reservation_expires_and_a_settled_one_counts_its_real_usage(db):
    day = ref("utc-day", tokens=1000)
    now = dt.datetime(2026, 3, 1, 12, 0)
    reserve([day], 900, now, dt.timedelta(minutes=1))           # its process dies: never settled
    with pytest.raises(AllowanceFull):
        reserve([day], 200, now + dt.timedelta(seconds=30), TTL)
    hold = reserve([day], 900, now + dt.timedelta(minutes=2), TTL)
    settle(hold, 250, 1)
    assert AllowanceWindow.get(AllowanceWindow.allowance == day.id).tokens_used == 250
    reserve([day], 750, now + dt.timedelta(minutes=3), TTL)


async def test_eight_clients_racing_a_nearly_used_allowance_do_not_pass_it(db, db_url):
    """Eight clients, each with its own accounting thread and connection, call until refused."""
    limit, room = 250_000, 3_000
    async with Simulator(latency=0.01) as sim, racers(sim, db_url, 8, allowances=ORG,
                                                      key_settings=ORG_KEYS) as harnesses:
        use_up("org-large", leave=room)
        served = await race_until_refused(harnesses)
    row = window_row("org-large")
    assert sum(served) > 5                                     # the room was really used, by several calls
    assert row.tokens_used == limit - room + event_tokens(LARGE)
    assert row.tokens_used <= limit                           # no overshoot (the simulator counts as we estimate)
    assert AllowanceHold.select().where(AllowanceHold.expires_at > utcnow()).count() == 0


@pytest.fixture(params=["postgres", "mysql"])
def server_db_url(request, tmp_path):
    """The server backends only: SQLite takes its one write lock at BEGIN, so a reserver there
    never waits between its reads."""
    with fresh_database_url(request.param, tmp_path) as url:
        db = open_test_db(url)
        yield url
        db.close()


def test_a_reserver_that_waited_for_a_lock_counts_the_hold_committed_meanwhile(server_db_url):
    """Allowances are locked in turn. A reserver that holds the first and waits for the second's
    lock (another reserver's, whose hold is not committed yet) must count that hold once it gets
    the lock: a read from before the wait (InnoDB's REPEATABLE READ snapshot) passes the limit."""
    db_url = server_db_url
    first, second = ref("utc-day", tokens=10_000), ref("rolling", tokens=1_000)     # locked in this order
    now = utcnow()
    spend([first], 100, now)          # both windows exist: the racer's only wait is for the second's lock
    spend([second], 400, now)
    outcome: dict = {}
    session = threading.Event()

    def racer():
        outcome["session"] = session_id(database.obj)
        session.set()
        try:
            outcome["hold"] = reserve([first, second], 600, now, TTL)
        except Exception as exc:  # noqa: BLE001 -- the assertion below says what came instead
            outcome["error"] = exc
        finally:
            database.obj.close()

    thread = threading.Thread(target=racer)
    with write_transaction():
        reserve([second], 600, now, TTL)            # locked and held until this transaction commits
        thread.start()
        session.wait()
        hang_guard = time.monotonic() + 300
        while not waits_for_a_lock(db_url, outcome["session"]):
            assert thread.is_alive() and time.monotonic() < hang_guard, outcome
            time.sleep(0.01)
    thread.join()
    assert isinstance(outcome.get("error"), AllowanceFull), outcome         # 400 used + 600 held + 600 > 1000
    assert "1,000 of 1,000 tokens used or reserved" in str(outcome["error"])


def test_the_readme_mixed_free_tier_pool_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if 'name = "org-mini"' in b)
    raw = tomllib.loads(textwrap.dedent(block))
    env = {k["api_key_env"]: f"sk-readme-{i:02d}-" + "x" * 24 for i, k in enumerate(raw["keys"])}
    config = parse_config(raw, "README.md", env=env)
    assert [a.name for a in config.allowances][:2] == ["org-mini", "org-large"]
    assert config.autoreply.models[-1] == "llama-3.3-70b-versatile"
    assert {k.label: k.allowances for k in config.keys}["gemini"] == ["gemini-free", "gemini-rpm"]


async def test_stats_group_the_keys_sharing_an_allowance(db, db_url):
    async with Simulator() as sim:
        h = await open_harness(sim, db_url, allowances=ORG, key_settings=ORG_KEYS)
        try:
            await h.client.chat(HELLO, operation="t", model="gpt-4o-mini")
        finally:
            await close_harness(h)
    snapshot = stats_snapshot(utcnow(), h.config)
    panel = render_stats(snapshot)
    assert "🏢 <b>org-mini</b> 🟢" in panel and "🏢 <b>org-large</b>" in panel
    assert panel.count("🔑 Keys: k1, k2, k3") == 2
    used = window_row("org-mini").tokens_used
    assert f"📊 {used:,} / 2,500,000 tokens" in panel
    data = stats_json(snapshot)
    (mini,) = [a for a in data["allowances"] if a["name"] == "org-mini"]
    assert (mini["tokens_used"], mini["tokens_left"], mini["keys"]) == (used, 2_500_000 - used, ["k1", "k2", "k3"])


def test_tokenpool_allowances_lists_each_pool_with_its_keys(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "state"\n'
                    '[[allowances]]\nname = "gemini-free"\nrequests = 1500\n'
                    '[[keys]]\nlabel = "g1"\napi_key = "sk-allow-cli-000000000001"\nallowances = ["gemini-free"]\n'
                    '[[keys]]\nlabel = "g2"\napi_key = "sk-allow-cli-000000000002"\nallowances = ["gemini-free"]\n')
    assert cli.main(["--config", str(path), "migrate"]) == 0          # `allowances` is a report: it only reads
    capsys.readouterr()
    assert cli.main(["--config", str(path), "allowances", "--json"]) == 0
    (pool,) = json.loads(capsys.readouterr().out)
    assert (pool["name"], pool["request_limit"], pool["requests_left"], pool["keys"]) == \
        ("gemini-free", 1500, 1500, ["g1", "g2"])
    assert cli.main(["--config", str(path), "keys"]) == 0
    assert "gemini-free" in capsys.readouterr().out
