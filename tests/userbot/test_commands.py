"""Owner commands through the real handlers: every command's output, bad arguments get
the usage line, and nobody but the owner in Saved Messages can run anything."""
from __future__ import annotations

from html import escape

import pytest
from pyrogram import enums

from shared.core.db import DatabaseUnavailable
from shared.core.models import ChatState, Setting
from tests.shared.report_fixtures import NOW, build_panel
from tests.shared.reports.test_render_telegram import GOLDEN_STATS
from tests.userbot.conftest import Clock
from tests.userbot.recording import (
    ALICE_ID,
    in_group,
    incoming,
    make_user,
    owner_in_chat,
    saved,
)
from userbot.app import BotApp
from userbot.commands import (
    Attachment,
    Command,
    Registry,
    Reply,
    UsageError,
    default_registry,
)

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
BOB = make_user(1002, "Bob", username="bob_builder")


async def command(bot, text: str) -> str:
    """Type `text` in Saved Messages; return what the command message was edited into."""
    message = saved(bot.client, text)
    await bot.send(message)
    edits = [c for c in bot.client.sent("edit_message_text") if c.args[1] == message.id]
    assert len(edits) == 1, f"{text!r} was not answered in place"
    assert edits[0].args[0] == bot.client.me.id
    return edits[0].args[2]


async def test_help_lists_every_command_with_its_usage(make_bot):
    bot = await make_bot()
    text = await command(bot, ".help")
    lines = text.splitlines()
    assert lines[0] == "🤖 <b>tokenpool commands</b>"
    for cmd in default_registry():
        assert f"<code>.{escape(cmd.usage)}</code> — {escape(cmd.help)}" in lines
    assert "<code>.cooldown &lt;minutes&gt;</code> — least time between two auto-replies in one chat" in lines
    assert bot.client.sent("edit_message_text")[0].kwargs["parse_mode"] == enums.ParseMode.HTML


async def test_help_for_one_command_gives_its_usage_and_an_example(make_bot):
    bot = await make_bot()
    text = await command(bot, ".help cooldown")
    assert text.splitlines() == ["<b>.cooldown</b> — least time between two auto-replies in one chat",
                                 "Usage: <code>.cooldown &lt;minutes&gt;</code>",
                                 "Example: <code>.cooldown 10</code>"]
    assert "Example: <code>.usage 7 by key</code>" in await command(bot, ".help .usage")
    for cmd in default_registry():        # every command has an example that is itself a valid use
        shown = await command(bot, f".help {cmd.name}")
        assert f"Usage: <code>.{escape(cmd.usage)}</code>" in shown and "Example: <code>." in shown
    assert await command(bot, ".help cooldwn") == \
        "❓ No command <code>.cooldwn</code>. Did you mean <code>.help cooldown</code>?"


async def test_stats_shows_the_eighteen_key_panel(make_bot, sqlite_url):
    config = build_panel(sqlite_url)
    bot = await make_bot(config=config, clock=Clock(NOW))
    assert await command(bot, ".stats") == GOLDEN_STATS


async def test_autoreply_on_off_status(make_bot):
    bot = await make_bot(autoreply={"working_hours": "09:00-18:00", "cooldown_seconds": 90})
    assert await command(bot, ".autoreply off") == \
        "⏸ Auto-replies are <b>off</b> until you send <code>.autoreply on</code>."
    assert Setting.get(Setting.scope == "main", Setting.name == "autoreply.enabled").value == "off"
    status = await command(bot, ".autoreply status")
    assert status.splitlines()[0] == "🤖 <b>Auto-replies: off</b> (bot <code>main</code>)"
    assert await command(bot, ".autoreply ON") == "✅ Auto-replies are <b>on</b>."
    await command(bot, f".deny {BOB.id}")
    bot.client.users["alice_w"] = ALICE
    await command(bot, ".allow @alice_w")
    status = (await command(bot, ".autoreply status")).splitlines()
    inside = "inside" if 9 <= bot.clock.now.hour < 18 else "outside"
    assert status == [
        "🤖 <b>Auto-replies: on</b> (bot <code>main</code>)",
        "Mode: every private chat except denied ones",
        "Cooldown: 90 s per chat",
        "Contacts only: no",
        "Muted chats: skipped",
        f"Working hours: 09:00-18:00 UTC (now {inside})",
        "Messages older than: 12h 0m are skipped",
        "Model: <code>gpt-4o-mini</code>, context 12 messages",
        "Bursts: answered once the contact paused 0 s",
        "Owner writes in a chat: hands off for 30 min",
        "Only when away: no",
        "Recipients: contacts, non-contacts, existing chats, new chats",
        "Media: all skipped",
        "Caps: no per chat per hour, no per minute in all",
        "Replies in the last 24 h: 0",
        f"Allowed chats: 1: @alice_w ({ALICE_ID})",
        f"Denied chats: 1: {BOB.id}",
    ]


async def test_allow_deny_unlist_by_id_username_and_inside_the_chat(make_bot):
    bot = await make_bot(autoreply={"mode": "allow"})
    bot.client.users["bob_builder"] = BOB
    assert await command(bot, f".allow {ALICE_ID}") == f"✅ Auto-replies allowed for <b>{ALICE_ID}</b>."
    assert await command(bot, ".deny @bob_builder") == f"🚫 No auto-replies for <b>@bob_builder ({BOB.id})</b>."
    rules = {row.chat_id: (row.rule, row.label) for row in ChatState.select()}
    assert rules == {ALICE_ID: ("allow", ""), BOB.id: ("deny", "@bob_builder")}
    assert await command(bot, f".unlist {BOB.id}") == f"↩️ Default rules again for <b>{BOB.id}</b>."
    assert ChatState.get(ChatState.chat_id == BOB.id).rule == ""

    inside = owner_in_chat(bot.client, BOB, ".allow")
    await bot.send(inside)
    assert bot.client.sent("delete_messages")[-1].args == (BOB.id, inside.id)
    assert bot.client.texts("me")[-1] == "✅ Auto-replies allowed for <b>@bob_builder (1002)</b>."
    assert ChatState.get(ChatState.chat_id == BOB.id).rule == "allow"


async def test_allow_notes_when_the_mode_makes_it_moot(make_bot):
    bot = await make_bot()
    text = await command(bot, f".allow {ALICE_ID}")
    assert text.endswith('<i>(mode is not "allow": every chat is answered anyway unless denied)</i>')


async def test_cooldown_command(make_bot):
    bot = await make_bot()
    assert await command(bot, ".cooldown 5") == "⏱ Cooldown set to <b>5 min</b> per chat."
    assert await command(bot, ".cooldown 0.5") == "⏱ Cooldown set to <b>30 s</b> per chat."
    assert await command(bot, ".cooldown 0") == \
        "⏱ Cooldown <b>off</b>: every message may get a reply (loop protection still applies)."
    assert Setting.get(Setting.name == "autoreply.cooldown_seconds").value == "0"


@pytest.mark.parametrize("text, usage, problem", [
    (".autoreply", ".autoreply on|off|status", ""),
    (".autoreply maybe", ".autoreply on|off|status", ""),
    (".autoreply on off", ".autoreply on|off|status", ""),
    (".cooldown", ".cooldown &lt;minutes&gt;", ""),
    (".cooldown soon", ".cooldown &lt;minutes&gt;", "&#x27;soon&#x27; is not a number of minutes"),
    (".cooldown -5", ".cooldown &lt;minutes&gt;", "minutes must be from 0 to 1440"),
    (".cooldown 99999", ".cooldown &lt;minutes&gt;", "minutes must be from 0 to 1440"),
    (".cooldown nan", ".cooldown &lt;minutes&gt;", "&#x27;nan&#x27; is not a number of minutes"),
    (".cooldown ²", ".cooldown &lt;minutes&gt;", "&#x27;²&#x27; is not a number of minutes"),
    (".cooldown ٣", ".cooldown &lt;minutes&gt;", "&#x27;٣&#x27; is not a number of minutes"),
    (".cooldown " + "9" * 5000, ".cooldown &lt;minutes&gt;", "&#x27;99999999999999999999&#x27; is not a number"),
    (".allow ²", ".allow [user id|@username]", "&#x27;²&#x27; is neither a user id nor a @username"),
    (".allow " + "9" * 19, ".allow [user id|@username]",
     "&#x27;9999999999999999999&#x27; is neither a user id nor a @username"),
    (".allow " + "9" * 5000, ".allow [user id|@username]", "is neither a user id nor a @username"),
    (".cap 12 ²", ".cap [user id|@username] [tokens|off]", "&#x27;²&#x27; is not a number of tokens from 1 to 10^12"),
    (".cap 12 " + "9" * 5000, ".cap [user id|@username] [tokens|off]", "is not a number of tokens"),
    (".pause 12 ²h", ".pause [user id|@username] [minutes|2h|1d]",
     "&#x27;²h&#x27; is no duration (e.g. 30, 30m, 2h, 1d)"),
    (".pause 12 " + "9" * 5000, ".pause [user id|@username] [minutes|2h|1d]", "a pause lasts from"),
    (".digest " + "9" * 5000, ".digest [hours]", "hours must be a number from 0 to 168"),
    (".cooldown 1 2", ".cooldown &lt;minutes&gt;", ""),
    (".allow", ".allow [user id|@username]", ""),
    (".allow !!", ".allow [user id|@username]", "&#x27;!!&#x27; is neither a user id nor a @username"),
    (".allow @nobody_here", ".allow [user id|@username]", "no Telegram user @nobody_here"),
    (".deny 12 extra", ".deny [user id|@username]", ""),
    (".unlist", ".unlist [user id|@username]", ""),
    (".stats now", ".stats", ""),
])
async def test_bad_arguments_get_the_usage_line(make_bot, text, usage, problem):
    bot = await make_bot()
    answer = await command(bot, text)
    line = f"Usage: <code>{usage}</code>"
    if len(text) > 100:           # the echo of a huge word is cut short
        assert answer.startswith("⚠️ ") and problem in answer and answer.endswith(line) and len(answer) < 300
        return
    assert answer == (f"⚠️ {problem}\n{line}" if problem else f"⚠️ {line}")
    assert "Traceback" not in answer


async def test_unknown_command_points_to_help(make_bot):
    bot = await make_bot()
    assert await command(bot, ".frobnicate 3") == \
        "❓ Unknown command <code>.frobnicate</code>. Send <code>.help</code> for the list."


@pytest.mark.parametrize("text", ["...", ". help", "just a note to self", ".", ".5 is a number"])
async def test_notes_in_saved_messages_are_left_alone(make_bot, text):
    bot = await make_bot()
    await bot.send(saved(bot.client, text))
    assert bot.client.calls == []


async def test_the_prefix_is_configurable(make_bot):
    bot = await make_bot(bot={"command_prefix": "!"})
    await bot.send(saved(bot.client, ".help"))
    assert bot.client.calls == []
    assert (await command(bot, "!help")).startswith("🤖 <b>tokenpool commands</b>")


async def test_commands_from_anyone_else_do_nothing(make_bot):
    bot = await make_bot(autoreply={"enabled": False})
    await bot.send(incoming(ALICE, ".autoreply on", client=bot.client))
    await bot.send(incoming(ALICE, ".stats", client=bot.client))
    await bot.send(incoming(BOB, f".allow {BOB.id}", client=bot.client))
    await bot.send(in_group(ALICE, ".stats", client=bot.client))
    assert bot.client.calls == []
    assert Setting.select().count() == 0 and ChatState.select().where(ChatState.rule != "").count() == 0


async def test_commands_outside_saved_messages_do_nothing(make_bot):
    bot = await make_bot(autoreply={"enabled": False})
    await bot.send(owner_in_chat(bot.client, ALICE, ".stats"))          # only chat commands run in a chat
    await bot.send(owner_in_chat(bot.client, ALICE, ".autoreply off"))
    group = in_group(bot.client.me, ".help", client=bot.client)
    group.outgoing = True
    await bot.send(group)
    await bot.send(saved(bot.client, ".autoreply off", forwarded=True))  # a forwarded text is no command
    assert bot.client.calls == []
    # Nothing ran; only the owner's activity (for the away logic) was noted.
    assert [s.name for s in Setting.select()] == ["owner.last_active"]


# --- the command layer: extension, long answers, files, failures ------------------------------

def _app_with(bot, *commands: Command) -> BotApp:
    registry = default_registry()
    registry.extend(commands)
    return BotApp(bot.config, bot.replier, registry, run_blocking=bot.run_blocking, clock=bot.clock)


async def test_new_commands_slot_in_and_appear_in_help(make_bot):
    bot = await make_bot()

    def tally(ctx):
        days = int(ctx.args[0]) if ctx.args else 30
        if days <= 0:
            raise UsageError("days must be positive")
        return f"tally of {days} days"

    bot.handlers = _app_with(bot, Command("tally", "tally [days]", "a made-up report", tally)).handlers()
    assert await command(bot, ".tally 7") == "tally of 7 days"
    assert await command(bot, ".tally 0") == "⚠️ days must be positive\nUsage: <code>.tally [days]</code>"
    assert "<code>.tally [days]</code> — a made-up report" in await command(bot, ".help")
    with pytest.raises(ValueError):
        Registry([Command("x", "x", "", tally), Command("X", "X", "", tally)])


def test_the_default_registry_has_the_report_commands():
    names = [command.name for command in default_registry()]
    assert names[:7] == ["help", "stats", "autoreply", "allow", "deny", "unlist", "cooldown"]
    assert {"usage", "recent", "export", "chart", "budget"} <= set(names)


async def test_long_plain_answers_continue_below_and_very_long_ones_become_a_file(make_bot):
    bot = await make_bot()
    long_text = "\n".join(f"line {i}: " + "x" * 60 for i in range(120))          # ~8,400 characters
    huge_text = "\n".join(f"row {i}: " + "y" * 70 for i in range(400))
    bot.handlers = _app_with(
        bot,
        Command("long", "long", "", lambda ctx: Reply(long_text, html=False)),
        Command("huge", "huge", "", lambda ctx: Reply(huge_text, html=False)),
    ).handlers()
    first = await command(bot, ".long")
    rest = bot.client.texts(bot.client.me.id)
    assert len(rest) == 2 and "\n".join([first] + rest) == long_text
    assert all(len(part) <= 4096 for part in [first] + rest)

    assert await command(bot, ".huge") == "📄 The answer is long; it is in the file below."
    (document,) = bot.client.sent("send_document")
    assert document.args[1] == "answer.txt" and document.args[2].decode() == huge_text


async def test_documents_and_photos_are_sent(make_bot):
    bot = await make_bot()
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    bot.handlers = _app_with(
        bot,
        Command("dump", "dump", "", lambda ctx: Reply("📤 7 days of usage",
                                                       document=Attachment(b"a,b\n1,2\n", "usage.csv"))),
        Command("picture", "picture", "", lambda ctx: Reply(photo=Attachment(png, "chart.png", "📈 30 days"))),
    ).handlers()
    assert await command(bot, ".dump") == "📤 7 days of usage"
    (document,) = bot.client.sent("send_document")
    assert document.args == (bot.client.me.id, "usage.csv", b"a,b\n1,2\n")
    assert await command(bot, ".picture") == "📈 30 days"
    (photo,) = bot.client.sent("send_photo")
    assert photo.args == (bot.client.me.id, "chart.png", png) and photo.kwargs["caption"] == "📈 30 days"


async def test_a_failing_command_answers_without_a_traceback(make_bot, caplog):
    bot = await make_bot()

    def broken(ctx):
        raise KeyError("internal detail")

    def offline(ctx):
        raise DatabaseUnavailable("db down")

    bot.handlers = _app_with(bot, Command("broken", "broken", "", broken),
                             Command("offline", "offline", "", offline)).handlers()
    assert await command(bot, ".broken") == "⚠️ <code>.broken</code> failed; the bot's log has the details."
    assert "internal detail" in caplog.text          # the traceback goes to the log
    assert await command(bot, ".offline") == "⚠️ The database is unavailable right now; try again in a minute."
