"""The auto-reply guards as pure functions: plain values in, a decision out."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core.config import parse_config
from userbot.guards import (
    ChatView,
    Load,
    Pending,
    Policy,
    Reason,
    Recipients,
    WorkingHours,
    admit,
    observe,
    plan,
    screen,
)
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
    (POLICY, ChatView(), {}, None),
    (POLICY, ChatView(rule="deny"), {}, Reason.DENIED),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(), {}, Reason.NOT_ALLOWED),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(rule="allow"), {}, None),
    (dataclasses.replace(POLICY, mode="allow"), ChatView(rule="deny"), {}, Reason.DENIED),
    (dataclasses.replace(POLICY, contacts_only=True), ChatView(), {"is_contact": False}, Reason.NOT_CONTACT),
    (POLICY, ChatView(), {"is_muted": True}, Reason.MUTED),
    (dataclasses.replace(POLICY, skip_muted=False), ChatView(), {"is_muted": True}, None),
    (POLICY, ChatView(), {"text": "", "media": "photo"}, Reason.MEDIA),
    (dataclasses.replace(POLICY, media="text"), ChatView(), {"text": "", "media": "photo"}, None),
    (POLICY, ChatView(), {"text": "look", "media": "photo"}, None),      # a caption is text
])
def test_admit(policy, chat, changes, reason):
    assert admit(msg(**changes), policy, chat) is reason


def pending(*seconds_ago: float) -> list[Pending]:
    return [Pending(i, i, f"m{i}", NOW - dt.timedelta(seconds=s), NOW - dt.timedelta(seconds=s))
            for i, s in enumerate(seconds_ago)]


QUIET = dataclasses.replace(POLICY, quiet=dt.timedelta(seconds=3))


@pytest.mark.parametrize("policy, chat, load, waiting", [
    (QUIET, ChatView(), Load(), None),
    (QUIET, ChatView(last_reply_at=NOW - dt.timedelta(seconds=10)), Load(), Reason.COOLDOWN),
    (dataclasses.replace(QUIET, enabled=False), ChatView(), Load(), Reason.OFF),
    (dataclasses.replace(QUIET, paused_until=NOW + dt.timedelta(minutes=1)), ChatView(), Load(), Reason.PAUSED),
    (QUIET, ChatView(owner_paused_until=NOW + dt.timedelta(minutes=1)), Load(), Reason.OWNER_PAUSED),
    (dataclasses.replace(QUIET, working_hours=WorkingHours.parse("13:00-17:00")), ChatView(), Load(),
     Reason.OUTSIDE_HOURS),
    (dataclasses.replace(QUIET, chat_hourly_cap=5), ChatView(), Load(chat_replies_last_hour=5), Reason.CHAT_CAP),
    (dataclasses.replace(QUIET, global_minute_cap=5), ChatView(), Load(replies_last_minute=5), Reason.GLOBAL_CAP),
    (dataclasses.replace(QUIET, only_when_away=True), ChatView(), Load(owner_away=False), Reason.OWNER_PRESENT),
])
def test_what_makes_messages_wait_never_drops_them(policy, chat, load, waiting):
    planned = plan(pending(20, 10), policy, chat, NOW, load)
    if waiting is None:
        assert [p.message_id for p in planned.answer] == [0, 1] and not planned.skip
    else:
        assert planned.waiting is waiting and not planned.answer and not planned.skip


def test_a_burst_waits_for_the_quiet_period_then_goes_as_one():
    planned = plan(pending(1.0, 0.7, 0.4), QUIET, ChatView(), NOW)
    assert planned.waiting is Reason.QUIET and planned.wait_until == NOW + dt.timedelta(seconds=2.6)
    later = plan(pending(4, 3.7, 3.4), QUIET, ChatView(), NOW)
    assert [p.message_id for p in later.answer] == [0, 1, 2]


def test_only_age_rules_and_loop_pauses_drop_waiting_messages():
    planned = plan(pending(13 * 3600, 60), POLICY, ChatView(last_reply_at=NOW), NOW)
    assert [(p.message_id, r) for p, r in planned.skip] == [(0, Reason.TOO_OLD)]
    assert planned.waiting is Reason.COOLDOWN
    paused = plan(pending(60), POLICY, ChatView(paused_until=NOW + dt.timedelta(minutes=1)), NOW)
    assert [r for _, r in paused.skip] == [Reason.LOOP_PAUSED]
    denied = plan(pending(60), POLICY, ChatView(rule="deny"), NOW)
    assert [r for _, r in denied.skip] == [Reason.DENIED]


@pytest.mark.parametrize("contact, new, recipients, admitted", [
    (True, False, Recipients(), True),
    (True, False, Recipients(contacts=False), False),
    (False, False, Recipients(non_contacts=False), False),
    (False, True, Recipients(existing_chats=False), True),
    (False, False, Recipients(existing_chats=False), False),
    (True, True, Recipients(new_chats=False), False),
    (True, None, Recipients(new_chats=False), True),         # chat age unknown: the contact question decides
])
def test_recipients_matrix(contact, new, recipients, admitted):
    policy = dataclasses.replace(POLICY, recipients=recipients)
    reason = admit(msg(is_contact=contact), policy, ChatView(new_chat=new))
    assert (reason is None) is admitted
    assert admit(msg(is_contact=contact), policy, ChatView(new_chat=new, rule="allow")) is None   # allow-list wins


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
        state = observe(msg(date=now), policy, chat, now)
        chat = dataclasses.replace(chat, fast_exchanges=state.fast_exchanges, paused_until=state.paused_until,
                                   last_incoming_at=now)
        if not plan(pending(0), policy, chat, now).skip and not state.detected:
            replies += 1
            chat = dataclasses.replace(chat, last_reply_at=now + dt.timedelta(milliseconds=500))
        now += dt.timedelta(seconds=1)
    assert replies == 3
    assert chat.paused_until == NOW + dt.timedelta(seconds=3) + dt.timedelta(hours=1)


@pytest.mark.parametrize("latency, text, fast", [
    (1, "ok", True),
    (10, "An automated answer of some length, as an AI writes: " * 3, True),   # 160 chars in 10 s: no person
    (10, "ok", False),                                                           # a person's quick "ok"
    (60, "An automated answer of some length, as an AI writes: " * 3, False),
])
def test_fast_means_faster_than_a_person_reads_and_types_whatever_the_latency(latency, text, fast):
    replied = NOW - dt.timedelta(seconds=latency)
    chat = ChatView(last_reply_at=replied, last_incoming_at=replied - dt.timedelta(seconds=5), fast_exchanges=1)
    assert observe(msg(date=NOW, text=text), POLICY, chat, NOW).fast_exchanges == (2 if fast else 0)


def test_a_slow_answer_ends_the_run_and_early_messages_answer_nothing():
    replied = NOW - dt.timedelta(seconds=2)
    chat = ChatView(last_reply_at=replied, last_incoming_at=replied - dt.timedelta(seconds=5), fast_exchanges=2)
    assert observe(msg(date=NOW), POLICY, chat, NOW).detected
    slow = dataclasses.replace(chat, last_reply_at=NOW - dt.timedelta(minutes=1))
    assert observe(msg(date=NOW), POLICY, slow, NOW).fast_exchanges == 0
    # Written before our reply went out (catch-up after a restart): not an answer to it.
    assert observe(msg(date=replied - dt.timedelta(seconds=30)), POLICY, chat, NOW).fast_exchanges == 2


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["all", "allow", "deny"]),
       st.sampled_from(["", "allow", "deny"]), st.integers(0, 120))
def test_never_a_reply_to_telegram_bots_or_self_whatever_the_settings(is_bot, is_self, from_telegram, enabled,
                                                                     mode, rule, seconds_since_reply):
    message = msg(is_bot=is_bot, is_self=is_self, sender_id=777000 if from_telegram else 5,
                  chat_id=777000 if from_telegram else 5)
    policy = dataclasses.replace(POLICY, enabled=enabled, mode=mode)
    chat = ChatView(rule=rule, last_reply_at=NOW - dt.timedelta(seconds=seconds_since_reply))
    replies = screen(message) is None and admit(message, policy, chat) is None and \
        bool(plan(pending(0), policy, chat, NOW).answer)
    if is_bot or is_self or from_telegram:
        assert not replies
    if replies:
        assert enabled and rule != "deny" and (mode != "allow" or rule == "allow") and seconds_since_reply >= 30
