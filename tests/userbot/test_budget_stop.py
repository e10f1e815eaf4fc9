"""A crossed, enforced budget stops auto-replies: the fallback text, one alert, no request
sent; `.budget lift` lets them go on until the period ends."""
from __future__ import annotations

from shared.core.models import Alert, ApiKey, DailyRollup, UsageEvent, utcnow
from tests.userbot.recording import ALICE_ID, incoming, make_user, saved

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
ENFORCED = {"enforce": True, "daily_tokens": 5_000}


def _crossed() -> None:
    """Book the pool's whole daily budget, as earlier calls would have."""
    key = ApiKey.select().first()
    DailyRollup.insert(day=utcnow().date(), key=key.id, bot="other", model="gpt-4o-mini", operation="autoreply",
                       calls=1, ok_calls=1, total_tokens=5_000, input_tokens=5_000).execute()


async def test_a_crossed_budget_sends_the_fallback_and_alerts_once(make_bot, simulator):
    bot = await make_bot(budgets=ENFORCED, autoreply={"fallback_text": "Away for now; back later."})
    _crossed()
    await bot.send(incoming(ALICE, "hello?", client=bot.client))
    assert bot.client.texts(ALICE_ID) == ["Away for now; back later."]
    (alert,) = Alert.select()
    assert alert.kind == "no_key" and "Auto-replies stopped" in alert.text and "budget" in alert.text
    assert alert.dedupe_key.startswith("budget_enforced:pool:day:tokens:")
    assert UsageEvent.select().count() == 0 and simulator.requests_for("k1") + simulator.requests_for("k2") == 0
    bot.clock.advance(hours=1)                            # past the chat's cooldown
    await bot.send(incoming(ALICE, "still there?", client=bot.client))
    assert Alert.select().count() == 1                     # one alert per budget and period


async def test_budget_lift_lets_auto_replies_go_on(make_bot):
    bot = await make_bot(budgets=ENFORCED, autoreply={"fallback_text": "Away for now; back later."})
    _crossed()
    message = saved(bot.client, ".budget lift")
    await bot.send(message)
    assert any("Budgets lifted" in text for text in bot.client.edits())
    await bot.send(incoming(ALICE, "hello?", client=bot.client))
    (reply,) = bot.client.texts(ALICE_ID)
    assert reply != "Away for now; back later."
    assert UsageEvent.select().count() == 1
