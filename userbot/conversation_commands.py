"""The owner's commands about conversations: `.pause`, `.resume`, `.persona`, `.cap`, `.digest`.

Inside a private chat they are about that chat; in Saved Messages they take a user id or
@username first (`.pause` and `.resume` without one are about every chat).
"""
from __future__ import annotations

import datetime as dt
from html import escape

from shared.core.numbers import decimal_number, whole_number
from shared.core.windows import format_duration
from userbot.commands import DURATION, Command, CommandContext, Reply, UsageError
from userbot.digest import away_digest, digest_period

MAX_PAUSE = dt.timedelta(days=30)
MAX_PERSONA = 2000


def _duration(word: str, default_unit: str = "m") -> dt.timedelta:
    match = DURATION.match(word)
    if match is None:
        raise UsageError(f"'{word[:20]}' is no duration (e.g. 30, 30m, 2h, 1d)")
    amount = decimal_number(match[1], 0, 60 * 24 * 31)
    if amount is None:
        raise UsageError("a pause lasts from a minute to 30 days")
    unit = (match[2] or default_unit).lower()
    delta = dt.timedelta(minutes=amount) if unit == "m" else \
        dt.timedelta(hours=amount) if unit == "h" else dt.timedelta(days=amount)
    if not dt.timedelta(0) < delta <= MAX_PAUSE:
        raise UsageError("a pause lasts from a minute to 30 days")
    return delta


def pause(ctx: CommandContext) -> Reply:
    if len(ctx.args) > 1:
        raise UsageError(f"unexpected '{ctx.args[1]}'")
    if ctx.args:
        length = _duration(ctx.args[0])
    else:
        length = dt.timedelta(minutes=ctx.config.autoreply.owner_pause_minutes or 30)
    until = ctx.now + length
    if ctx.target is None:
        ctx.store.set_paused_until(until)
        who = "every chat"
    else:
        ctx.store.pause_chat(ctx.target.chat_id, until)
        who = ctx.target.describe()
    return Reply(f"⏸ No auto-replies in <b>{escape(who)}</b> for {format_duration(length)} "
                 f"(until {until:%H:%M} UTC). Messages wait; <code>{escape(ctx.prefix)}resume</code> ends it.")


def resume(ctx: CommandContext) -> Reply:
    if ctx.args:
        raise UsageError(f"unexpected '{ctx.args[0]}'")
    if ctx.target is None:
        ctx.store.set_paused_until(None)
        lifted = ctx.store.resume()
        return Reply(f"▶️ Auto-replies resumed everywhere ({lifted} chat pause(s) lifted, loop pauses included).")
    ctx.store.resume(ctx.target.chat_id)
    return Reply(f"▶️ Auto-replies resumed in <b>{escape(ctx.target.describe())}</b> "
                 "(the owner's and loop protection's pauses lifted).")


def persona(ctx: CommandContext) -> Reply:
    if ctx.target is None:
        raise UsageError("which chat? type it inside the chat, or give a user id or @username first")
    text = " ".join(ctx.args).strip()
    view = ctx.store.chat_view(ctx.target.chat_id)
    who = escape(ctx.target.describe())
    if not text:
        current = view.persona or ctx.config.autoreply.system_prompt
        source = "its own" if view.persona else "the default (config)"
        return Reply(f"🎭 Persona of <b>{who}</b> ({source}):\n<i>{escape(current)}</i>")
    if text.lower() == "reset":
        ctx.store.set_persona(ctx.target.chat_id, None)
        return Reply(f"🎭 <b>{who}</b> gets the default persona again.")
    if len(text) > MAX_PERSONA:
        raise UsageError(f"a persona is at most {MAX_PERSONA} characters")
    ctx.store.set_persona(ctx.target.chat_id, text)
    return Reply(f"🎭 Persona of <b>{who}</b> set:\n<i>{escape(text)}</i>")


def cap(ctx: CommandContext) -> Reply:
    if ctx.target is None:
        raise UsageError("which chat? type it inside the chat, or give a user id or @username first")
    who = escape(ctx.target.describe())
    if not ctx.args:
        view = ctx.store.chat_view(ctx.target.chat_id)
        used = ctx.store.tokens_on(ctx.target.chat_id, ctx.now.date())
        limit = f"{view.daily_token_cap:,}" if view.daily_token_cap is not None else "no cap"
        return Reply(f"🧮 <b>{who}</b>: {used:,} tokens today (UTC), cap: {limit}.")
    if len(ctx.args) > 1:
        raise UsageError(f"unexpected '{ctx.args[1]}'")
    word = ctx.args[0].lower().replace(",", "").replace("_", "")
    if word in ("off", "none"):
        ctx.store.set_cap(ctx.target.chat_id, None)
        return Reply(f"🧮 No daily token cap for <b>{who}</b>.")
    tokens = whole_number(word, 1, 10**12)
    if tokens is None:
        raise UsageError(f"'{ctx.args[0][:20]}' is not a number of tokens from 1 to 10^12")
    ctx.store.set_cap(ctx.target.chat_id, tokens)
    return Reply(f"🧮 <b>{who}</b>: at most {tokens:,} tokens of auto-replies per UTC day; "
                 "messages past it are held until 00:00 UTC and answered then (unless too old by then).")


def digest(ctx: CommandContext) -> Reply:
    if len(ctx.args) > 1:
        raise UsageError(f"unexpected '{ctx.args[1]}'")
    hours = None
    if ctx.args:
        hours = decimal_number(ctx.args[0], 0, 24 * 7)
        if not hours:
            raise UsageError("hours must be a number from 0 to 168")
    since = digest_period(ctx.store, ctx.now, hours)
    return away_digest(ctx.store, ctx.config, since, ctx.now) or Reply("Nothing to show.")


COMMANDS = (
    Command("pause", "pause [user id|@username] [minutes|2h|1d]",
            "no auto-replies (in one chat, or everywhere) for a while; messages wait", pause,
            takes_user=True, user_optional=True),
    Command("resume", "resume [user id|@username]", "end a pause, also loop protection's", resume,
            takes_user=True, user_optional=True),
    Command("persona", "persona [user id|@username] [text|reset]", "this chat's own system prompt", persona,
            takes_user=True, user_optional=True),
    Command("cap", "cap [user id|@username] [tokens|off]", "a daily token cap for this contact", cap,
            takes_user=True, user_optional=True),
    Command("digest", "digest [hours]", "who wrote, what was answered, what needs you, and the cost", digest),
)
