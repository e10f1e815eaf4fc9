"""The auto-reply guards as pure functions: plain values in, a decision out."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core.config import parse_config
from userbot.guards import ChatView, Policy, Reason, WorkingHours, decide, screen
from userbot.incoming import IncomingMessage

NOW = dt.datetime(2026, 3, 10, 12, 0, 0)
POLICY = Policy(cooldown=dt.timedelta(seconds=30))


def msg(**changes) -> IncomingMessage:
    base = IncomingMessage(chat_id=5, message_id=1, sender_id=5, date=NOW, text="hello", is_contact=True)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("changes, reason", [
    ({"is_private": False}, Reason.NOT_PRIVATE),
    ({"is_self": True}, Reason.SELF),
    ({"chat_id": 777000, "sender_id": 777000}, Reason.TELEGRAM),
    ({"sender_id": 777000}, Reason.TELEGRAM),
    ({"is_bot": True}, Reason.BOT),
    ({"is_service": True}, Reason.SERVICE_MESSAGE),
    ({"text": "   "}, Reason.NO_TEXT),
    ({}, None),
])
def test_screen(changes, reason):
    assert screen(msg(**changes)) is reason


@pytest.mark.parametrize("policy, chat, changes, reason", [
    (POLICY, ChatView(), {}, Reason.REPLY),
    (dataclasses.replace(POLICY, enabled=False), ChatView(), {}, Reason.OFF),
    (POLICY, ChatView(rule="deny"), {}, Reason.DENIED),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(), {}, Reason.NOT_ALLOWED),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(rule="allow"), {}, Reason.REPLY),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(rule="deny"), {}, Reason.DENIED),
    (dataclasses.replace(POLICY, contacts_only=True), ChatView(), {"is_contact": False}, Reason.NOT_CONTACT),
    (POLICY, ChatView(), {"is_muted": True}, Reason.MUTED),
    (dataclasses.replace(POLICY, skip_muted=False), ChatView(), {"is_muted": True}, Reason.REPLY),
    (POLICY, ChatView(), {"date": NOW - dt.timedelta(hours=13)}, Reason.TOO_OLD),
    (dataclasses.replace(POLICY, max_age=None), ChatView(), {"date": NOW - dt.timedelta(days=9)}, Reason.REPLY),
    (dataclasses.replace(POLICY, working_hours=WorkingHours.parse("13:00-17:00")), ChatView(), {},
     Reason.OUTSIDE_HOURS),
    (POLICY, ChatView(last_reply_at=NOW - dt.timedelta(seconds=10)), {}, Reason.COOLDOWN),
    (POLICY, ChatView(last_reply_at=NOW - dt.timedelta(seconds=30)), {}, Reason.REPLY),
    (POLICY, ChatView(paused_until=NOW + dt.timedelta(minutes=1)), {}, Reason.LOOP_PAUSED),
    (POLICY, ChatView(paused_until=NOW), {}, Reason.REPLY),
    (dataclasses.replace(POLICY, enabled=False), ChatView(), {"is_bot": True}, Reason.BOT),
])
def test_decide(policy, chat, changes, reason):
    assert decide(msg(**changes), policy, chat, NOW).reason is reason


def test_only_replies_and_conversation_worth_keeping_are_kept_as_context():
    assert decide(msg(), POLICY, ChatView(), NOW).keep_context
    assert decide(msg(), dataclasses.replace(POLICY, enabled=False), ChatView(), NOW).keep_context
    assert not decide(msg(), POLICY, ChatView(rule="deny"), NOW).keep_context
    assert not decide(msg(is_bot=True), POLICY, ChatView(), NOW).keep_context


@pytest.mark.parametrize("hours, time, inside", [
    ("09:00-18:00", "09:00", True), ("09:00-18:00", "17:59", True), ("09:00-18:00", "18:00", False),
    ("09:00-18:00", "03:00", False), ("22:00-06:00", "23:30", True), ("22:00-06:00", "05:59", True),
    ("22:00-06:00", "06:00", False), ("22:00-06:00", "12:00", False),
])
def test_working_hours_include_overnight_ranges(hours, time, inside):
    moment = dt.datetime.combine(NOW.date(), dt.time.fromisoformat(time))
    assert WorkingHours.parse(hours).contains(moment) is inside


def test_policy_from_config_and_the_owners_overrides():
    config = parse_config({"autoreply": {"cooldown_seconds": 45, "mode": "allow", "working_hours": "08:00-20:00",
                                         "max_message_age_minutes": 0, "loop_pause_minutes": 30}})
    policy = Policy.from_config(config.autoreply)
    assert (policy.cooldown, policy.mode, policy.max_age, policy.loop_pause) == \
        (dt.timedelta(seconds=45), "allow", None, dt.timedelta(minutes=30))
    assert policy.working_hours == WorkingHours(dt.time(8), dt.time(20))
    overridden = Policy.from_config(config.autoreply, enabled=False, cooldown_seconds=0)
    assert (overridden.enabled, overridden.cooldown) == (False, dt.timedelta(0))


def test_a_machine_fast_answerer_is_paused_after_n_exchanges():
    policy = dataclasses.replace(POLICY, cooldown=dt.timedelta(0), loop_max_fast_exchanges=3,
                                 loop_fast_reply=dt.timedelta(seconds=5), loop_pause=dt.timedelta(hours=1))
    chat, now, replies = ChatView(), NOW, 0
    for _ in range(6):
        decision = decide(msg(date=now), policy, chat, now)
        chat = dataclasses.replace(chat, fast_exchanges=decision.fast_exchanges,
                                   paused_until=decision.paused_until, last_incoming_at=now)
        if decision.reply:
            replies += 1
            chat = dataclasses.replace(chat, last_reply_at=now + dt.timedelta(milliseconds=500))
        now += dt.timedelta(seconds=1)
    assert replies == 3
    assert chat.paused_until == NOW + dt.timedelta(seconds=3) + dt.timedelta(hours=1)


def test_a_slow_answer_ends_the_run_and_early_messages_answer_nothing():
    policy = dataclasses.replace(POLICY, cooldown=dt.timedelta(0))
    replied = NOW - dt.timedelta(seconds=2)
    chat = ChatView(last_reply_at=replied, last_incoming_at=replied - dt.timedelta(seconds=5), fast_exchanges=2)
    assert decide(msg(date=NOW), policy, chat, NOW).reason is Reason.LOOP_DETECTED
    slow = dataclasses.replace(chat, last_reply_at=NOW - dt.timedelta(minutes=1))
    assert decide(msg(date=NOW), policy, slow, NOW).fast_exchanges == 0
    # Written before our reply went out (catch-up after a restart): not an answer to it.
    assert decide(msg(date=replied - dt.timedelta(seconds=30)), policy, chat, NOW).fast_exchanges == 2


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["all", "allow", "deny"]),
       st.sampled_from(["", "allow", "deny"]), st.integers(0, 120))
def test_never_a_reply_to_telegram_bots_or_self_whatever_the_settings(is_bot, is_self, from_telegram, enabled,
                                                                     mode, rule, seconds_since_reply):
    message = msg(is_bot=is_bot, is_self=is_self, sender_id=777000 if from_telegram else 5,
                  chat_id=777000 if from_telegram else 5)
    policy = dataclasses.replace(POLICY, enabled=enabled, mode=mode)
    chat = ChatView(rule=rule, last_reply_at=NOW - dt.timedelta(seconds=seconds_since_reply))
    decision = decide(message, policy, chat, NOW)
    if is_bot or is_self or from_telegram:
        assert not decision.reply
    if decision.reply:
        assert enabled and rule != "deny" and (mode != "allow" or rule == "allow") and seconds_since_reply >= 30
