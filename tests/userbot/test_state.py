"""The bot's database side on every backend: switches, rules, pacing, context, claims."""
import datetime as dt

from userbot.state import AUTO, CONTACT, OWNER, ChatRule, ContextLine, Store, Switches

T0 = dt.datetime(2026, 3, 10, 12, 0, 0)


def test_switches_rules_and_state_per_bot(db):
    main, alt = Store("main"), Store("alt")
    assert main.switches() == Switches()
    main.set_enabled(False)
    main.set_cooldown(120)
    main.set_enabled(True)                  # an upsert, not a second row
    assert main.switches() == Switches(enabled=True, cooldown_seconds=120)
    assert alt.switches() == Switches()     # each bot has its own

    main.set_rule(5, "allow", "@five")
    main.set_rule(6, "deny")
    main.set_rule(5, "deny")                # a chat has one rule; the label stays
    alt.set_rule(5, "allow")
    assert main.rules() == [ChatRule(5, "deny", "@five"), ChatRule(6, "deny", "")]
    main.set_rule(6, "")
    assert main.rules() == [ChatRule(5, "deny", "@five")]

    main.save_loop_state(5, 2, None, T0)
    main.note_reply(5, T0 + dt.timedelta(seconds=1))
    view = main.chat_view(5)
    assert (view.rule, view.fast_exchanges, view.last_incoming_at, view.last_reply_at) == \
        ("deny", 2, T0, T0 + dt.timedelta(seconds=1))
    assert alt.chat_view(5).last_reply_at is None


def test_each_message_is_claimed_once_and_old_claims_are_pruned(db):
    store = Store("main")
    assert store.claim(5, 100, T0)
    assert not store.claim(5, 100, T0)
    assert Store("alt").claim(5, 100, T0)           # another account's chat 5 is another chat
    store.settle(5, 100, "replied")
    assert store.outcome(5, 100) == "replied"
    assert store.replies_since(T0 - dt.timedelta(hours=1)) == 1
    assert store.claim(5, 101, T0 + dt.timedelta(days=40))
    assert store.prune_handled(T0 + dt.timedelta(days=31)) == 1
    assert store.outcome(5, 100) is None and store.outcome(5, 101) == "claimed"


def test_context_keeps_order_and_is_trimmed(db):
    store = Store("main")
    for i in range(10):
        store.remember(5, i, CONTACT if i % 2 else OWNER, f"m{i}", T0)
    store.remember(5, 3, CONTACT, "again", T0)      # the same message twice is kept once
    store.remember(5, 1000, AUTO, "reply", T0)
    assert store.trim(5, 4) == 7
    assert store.context(5, 3) == [
        ContextLine(OWNER, "m8", T0, 8), ContextLine(CONTACT, "m9", T0, 9), ContextLine(AUTO, "reply", T0, 1000)]
    assert store.context(6, 3) == [] and store.context(5, 0) == []
