"""The owner's commands (typed in Saved Messages): a registry, a parser and the core commands.

A command is a name, a usage line, one line of help and a handler. Handlers are plain
blocking functions: they take a `CommandContext` (plain values) and return a `Reply` (or
a string), and raise `UsageError` when the arguments are wrong, which the owner sees as
the command's usage line. Nothing a user types produces a traceback in Telegram.

Adding commands: write a module with `COMMANDS = [Command(...), ...]` (as
`userbot.report_commands` does for `.usage`, `.recent`, `.export`, `.chart`, `.budget`)
and extend the registry with it in `default_registry` below.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import difflib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape

from shared.core.config import Config
from shared.core.db import DatabaseUnavailable
from shared.core.numbers import decimal_number, is_ascii_number
from shared.core.windows import format_duration
from shared.reports import queries
from shared.reports.offload import MadeFile, discard
from shared.reports.render_telegram import render_stats
from userbot.guards import Policy
from userbot.state import Store

log = logging.getLogger("tokenpool.commands")

COMMAND = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:\s+(?P<rest>.*))?$", re.DOTALL)
MAX_COOLDOWN_MINUTES = 1440


class UsageError(Exception):
    """The arguments of a command are wrong; the message (optional) says how."""


@dataclass(frozen=True)
class Attachment:
    """A file to send with a reply (a document or a photo): its bytes, or `path`, a private
    temporary file made by the report helper (`shared.reports.offload`), which is sent by
    its path (the bot never reads it) and deleted once sent (`discard`)."""
    data: bytes
    filename: str
    caption: str = ""
    path: str = ""

    @classmethod
    def from_file(cls, made: MadeFile, caption: str = "") -> Attachment:
        return cls(b"", made.filename, caption, path=made.path)

    def discard(self) -> None:
        if self.path:
            discard(self.path)


@dataclass(frozen=True)
class Reply:
    """What a command answers: text (Telegram HTML unless `html` is false) and/or a file."""
    text: str = ""
    html: bool = True
    document: Attachment | None = None
    photo: Attachment | None = None

    def discard_files(self) -> None:
        """Delete the temporary files of this reply (after sending, or when it cannot be sent)."""
        for attachment in (self.document, self.photo):
            if attachment is not None:
                attachment.discard()


@dataclass(frozen=True)
class Target:
    """The user a command is about: the chat it was typed in, or a user id / @username."""
    chat_id: int
    label: str = ""

    def describe(self) -> str:
        return f"{self.label} ({self.chat_id})" if self.label else str(self.chat_id)


@dataclass(frozen=True)
class CommandContext:
    bot: str
    config: Config
    store: Store
    now: dt.datetime                        # naive UTC
    args: tuple[str, ...] = ()
    chat_id: int | None = None              # the private chat it was typed in; None: Saved Messages
    chat_label: str = ""
    target: Target | None = None            # for commands that take a user

    @property
    def prefix(self) -> str:
        return self.config.bot.command_prefix


Handler = Callable[[CommandContext], "Reply | str"]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str                              # e.g. "cooldown <minutes>" (without the prefix)
    help: str
    handler: Handler
    takes_user: bool = False                # typed inside a chat, or given a user id / @username
    user_optional: bool = False             # ... or neither (then about every chat)
    example: str = ""                       # e.g. "cooldown 10" (without the prefix), shown by `.help <name>`


class Registry:
    """The commands by name, in the order they were added (the order of `.help`)."""

    def __init__(self, commands: list[Command] | tuple[Command, ...] = ()):
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> None:
        name = command.name.lower()
        if name in self._commands:
            raise ValueError(f"command '{name}' is registered twice")
        self._commands[name] = command

    def extend(self, commands) -> None:
        for command in commands:
            self.add(command)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name.lower())

    def __iter__(self):
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)


def parse_command(text: str, prefix: str) -> tuple[str, tuple[str, ...]] | None:
    """".cooldown 5" -> ("cooldown", ("5",)); None when the text is no command at all."""
    if not prefix or not text.startswith(prefix):
        return None
    match = COMMAND.match(text[len(prefix):].rstrip())
    if match is None:
        return None
    return match["name"].lower(), tuple((match["rest"] or "").split())


Resolver = Callable[[str], Awaitable["Target | None"]]


def is_command(registry: Registry, text: str, prefix: str, *, inside_chat: bool) -> bool:
    """Whether `text` is a command that runs where it was typed (inside a private chat only
    the commands about a chat do; in Saved Messages anything with the prefix is answered)."""
    parsed = parse_command(text, prefix)
    if parsed is None:
        return False
    command = registry.get(parsed[0])
    return not inside_chat or (command is not None and command.takes_user)


async def run_command(registry: Registry, text: str, base: CommandContext, *, resolve: Resolver | None = None,
                      run_blocking: Callable[..., Awaitable] | None = None) -> Reply | None:
    """Run the command in `text`; None when `text` is not a command that may run here.

    Inside a private chat (`base.chat_id` set) only commands that take a user run."""
    parsed = parse_command(text, base.prefix)
    if parsed is None:
        return None
    name, args = parsed
    command = registry.get(name)
    inside_chat = base.chat_id is not None
    if inside_chat and (command is None or not command.takes_user):
        return None
    if command is None:
        return Reply(f"❓ Unknown command <code>{escape(base.prefix + name)}</code>. "
                     f"Send <code>{escape(base.prefix)}help</code> for the list.")
    run_blocking = run_blocking or asyncio.to_thread
    try:
        context = dataclasses.replace(base, args=args)
        if command.takes_user:
            context = await _with_target(context, resolve, optional=command.user_optional)
        reply = await run_blocking(command.handler, context)
    except UsageError as exc:
        return usage_reply(command, base.prefix, str(exc))
    except DatabaseUnavailable:
        return Reply("⚠️ The database is unavailable right now; try again in a minute.")
    except Exception:
        log.exception("command %s%s failed", base.prefix, name)
        return Reply(f"⚠️ <code>{escape(base.prefix + name)}</code> failed; the bot's log has the details.")
    return Reply(reply) if isinstance(reply, str) else reply


def usage_reply(command: Command, prefix: str, problem: str = "") -> Reply:
    line = f"Usage: <code>{escape(prefix + command.usage)}</code>"
    return Reply(f"⚠️ {escape(problem)}\n{line}" if problem else f"⚠️ {line}")


DURATION = re.compile(r"^([0-9]+(?:[.,][0-9]+)?)([mhd]?)$", re.IGNORECASE | re.ASCII)
TELEGRAM_ID = re.compile(r"-?[0-9]{1,19}", re.ASCII)
MAX_TELEGRAM_ID = 2**63 - 1      # the column is a signed 64-bit integer on every backend


async def _with_target(context: CommandContext, resolve: Resolver | None, *, optional: bool = False) -> CommandContext:
    args = context.args
    if optional:
        # Inside a chat: about that chat, every word is an argument. In Saved Messages: no
        # words, or just a duration with its unit (".pause 2h"), is about every chat.
        if context.chat_id is not None:
            return dataclasses.replace(context, target=Target(context.chat_id, context.chat_label))
        if not args or (len(args) == 1 and DURATION.match(args[0]) and args[0][-1:].isalpha()):
            return dataclasses.replace(context, target=None)
    if args:
        who, rest = args[0], args[1:]
        target: Target | None
        if TELEGRAM_ID.fullmatch(who) and abs(int(who)) <= MAX_TELEGRAM_ID:
            target = Target(int(who))
        elif re.fullmatch(r"@?[A-Za-z][A-Za-z0-9_]{4,31}", who):
            username = who if who.startswith("@") else "@" + who
            target = await resolve(username) if resolve else None
            if target is None:
                raise UsageError(f"no Telegram user {username}")
        else:
            raise UsageError(f"'{who[:20]}' is neither a user id nor a @username")
        return dataclasses.replace(context, target=target, args=rest)
    if context.chat_id is not None:
        return dataclasses.replace(context, target=Target(context.chat_id, context.chat_label))
    raise UsageError("")


# --- the core commands ------------------------------------------------------------------------

def default_registry() -> Registry:
    """Every command the bot answers."""
    from userbot import (  # they build on this module's types; imported once they exist
        conversation_commands,
        report_commands,
    )
    registry = Registry()
    registry.add(Command("help", "help [command]", "this list, or one command's usage and an example",
                         _help_of(registry), example="help usage"))
    registry.extend(CORE_COMMANDS)
    registry.extend(conversation_commands.COMMANDS)
    registry.extend(report_commands.COMMANDS)
    return registry


def _help_of(registry: Registry) -> Handler:
    def help_(ctx: CommandContext) -> Reply:
        if len(ctx.args) > 1:
            raise UsageError("")
        if ctx.args:
            return _help_for(registry, ctx.args[0], ctx.prefix)
        lines = ["🤖 <b>tokenpool commands</b>", ""]
        for command in registry:
            lines.append(f"<code>{escape(ctx.prefix + command.usage)}</code> — {escape(command.help)}")
        inside = ", ".join(escape(ctx.prefix + c.name) for c in registry if c.takes_user)
        lines += ["", f"<i>{inside} also work inside a chat, about that chat. "
                      f"{escape(ctx.prefix)}help &lt;command&gt; shows its usage and an example.</i>"]
        return Reply("\n".join(lines))
    return help_


def _help_for(registry: Registry, name: str, prefix: str) -> Reply:
    """`.help usage`: the command's usage line, what it does, and an example to copy."""
    name = name.removeprefix(prefix).lower()
    command = registry.get(name)
    if command is None:
        close = difflib.get_close_matches(name, [c.name for c in registry], n=1)
        hint = f" Did you mean <code>{escape(prefix)}help {escape(close[0])}</code>?" if close else ""
        return Reply(f"❓ No command <code>{escape(prefix + name)}</code>.{hint}")
    lines = [f"<b>{escape(prefix + command.name)}</b> — {escape(command.help)}",
             f"Usage: <code>{escape(prefix + command.usage)}</code>",
             f"Example: <code>{escape(prefix + (command.example or command.name))}</code>"]
    if command.takes_user:
        lines.append("<i>Inside a private chat it is about that chat; elsewhere give a user id or @username.</i>")
    return Reply("\n".join(lines))


def stats(ctx: CommandContext) -> Reply:
    if ctx.args:
        raise UsageError("")
    return Reply(render_stats(queries.stats_snapshot(ctx.now, ctx.config)))


def autoreply(ctx: CommandContext) -> Reply:
    if len(ctx.args) != 1 or ctx.args[0].lower() not in ("on", "off", "status"):
        raise UsageError("")
    action = ctx.args[0].lower()
    if action == "on":
        ctx.store.set_enabled(True)
        return Reply("✅ Auto-replies are <b>on</b>.")
    if action == "off":
        ctx.store.set_enabled(False)
        return Reply("⏸ Auto-replies are <b>off</b> until you send "
                     f"<code>{escape(ctx.prefix)}autoreply on</code>.")
    return Reply(autoreply_status(ctx))


def autoreply_status(ctx: CommandContext) -> str:
    settings = ctx.config.autoreply
    switches = ctx.store.switches()
    policy = Policy.from_config(settings, enabled=switches.enabled, cooldown_seconds=switches.cooldown_seconds,
                                paused_until=switches.paused_until)
    rules = ctx.store.rules()
    allowed = [r for r in rules if r.rule == "allow"]
    denied = [r for r in rules if r.rule == "deny"]
    hours = "always"
    if policy.working_hours is not None:
        inside = "now inside" if policy.working_hours.contains(ctx.now) else "now outside"
        hours = f"{settings.working_hours} UTC ({inside})"
    lines = [
        f"🤖 <b>Auto-replies: {'on' if policy.enabled else 'off'}</b> (bot <code>{escape(ctx.bot)}</code>)",
        f"Mode: {'only allowed chats' if policy.mode == 'allow' else 'every private chat except denied ones'}",
        f"Cooldown: {_minutes(policy.cooldown)} per chat",
        f"Contacts only: {'yes' if policy.contacts_only else 'no'}",
        f"Muted chats: {'skipped' if policy.skip_muted else 'answered'}",
        f"Working hours: {hours}",
        f"Messages older than: {format_duration(policy.max_age) if policy.max_age else 'no limit'} are skipped",
        f"Model: <code>{escape(settings.model or ctx.config.client.default_model)}</code>, "
        f"context {settings.context_messages} messages",
        f"Bursts: answered once the contact paused {settings.reply_after_quiet_seconds:g} s",
        f"Owner writes in a chat: hands off for {settings.owner_pause_minutes} min",
        f"Only when away: {f'yes, after {settings.away_after_minutes} min' if policy.only_when_away else 'no'}",
        f"Recipients: {_recipients(policy)}",
        f"Media: {_media(policy, settings.vision_model or settings.model or ctx.config.client.default_model)}",
        f"Caps: {settings.max_replies_per_chat_per_hour or 'no'} per chat per hour, "
        f"{settings.max_replies_per_minute or 'no'} per minute in all",
        f"Replies in the last 24 h: {ctx.store.replies_since(ctx.now - dt.timedelta(hours=24)):,}",
        f"Allowed chats: {_listing(allowed)}",
        f"Denied chats: {_listing(denied)}",
    ]
    if policy.paused_until is not None and policy.paused_until > ctx.now:
        lines.insert(1, f"⏸ Paused everywhere until {policy.paused_until:%H:%M} UTC")
    paused = ctx.store.paused_chats(ctx.now)
    if paused:
        shown = ", ".join(escape(f"{name} ({why}, until {until:%H:%M})") for name, until, why in paused[:10])
        lines.append(f"Paused chats: {shown}")
    return "\n".join(lines)


MEDIA_WORDS = {"ignore": "skipped", "text": "answered with media_text", "vision": "shown to the model"}


def _media(policy: Policy, vision_model: str) -> str:
    """"photos shown to the model (gpt-4o); others skipped"."""
    kinds = [f"{kind}s {MEDIA_WORDS[mode]}" + (f" ({vision_model})" if mode == "vision" else "")
             for kind, mode in policy.media_by_kind if mode != policy.media]
    return "; ".join(kinds + [f"{'others' if kinds else 'all'} {MEDIA_WORDS[policy.media]}"])


def _recipients(policy: Policy) -> str:
    r = policy.recipients
    chosen = [name for name, on in (("contacts", r.contacts), ("non-contacts", r.non_contacts),
                                    ("existing chats", r.existing_chats), ("new chats", r.new_chats)) if on]
    return ", ".join(chosen) or "nobody"


def _listing(rules, shown: int = 10) -> str:
    if not rules:
        return "none"
    names = [escape(f"{r.label} ({r.chat_id})" if r.label else str(r.chat_id)) for r in rules[:shown]]
    more = f" …and {len(rules) - shown} more" if len(rules) > shown else ""
    return f"{len(rules)}: " + ", ".join(names) + more


def _minutes(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "none"
    if seconds % 60:
        return f"{seconds} s"
    return f"{seconds // 60} min"


def _set_rule(rule: str, done: str) -> Handler:
    def handler(ctx: CommandContext) -> Reply:
        if ctx.args or ctx.target is None:      # the target comes from _with_target
            raise UsageError("")
        ctx.store.set_rule(ctx.target.chat_id, rule, ctx.target.label)
        note = ""
        if rule == "allow" and ctx.config.autoreply.mode != "allow":
            note = "\n<i>(mode is not \"allow\": every chat is answered anyway unless denied)</i>"
        return Reply(f"{done} <b>{escape(ctx.target.describe())}</b>.{note}")
    return handler


def cooldown(ctx: CommandContext) -> Reply:
    if len(ctx.args) != 1:
        raise UsageError("")
    if not is_ascii_number(ctx.args[0]):
        raise UsageError(f"'{ctx.args[0][:20]}' is not a number of minutes")
    minutes = decimal_number(ctx.args[0], 0, MAX_COOLDOWN_MINUTES)
    if minutes is None:
        raise UsageError(f"minutes must be from 0 to {MAX_COOLDOWN_MINUTES}")
    seconds = round(minutes * 60)
    ctx.store.set_cooldown(seconds)
    if seconds == 0:
        return Reply("⏱ Cooldown <b>off</b>: every message may get a reply (loop protection still applies).")
    return Reply(f"⏱ Cooldown set to <b>{_minutes(dt.timedelta(seconds=seconds))}</b> per chat.")


CORE_COMMANDS = (
    Command("stats", "stats", "keys, tokens used and left today, worker and bots", stats),
    Command("autoreply", "autoreply on|off|status", "switch auto-replies, or show their settings", autoreply,
            example="autoreply off"),
    Command("allow", "allow [user id|@username]", "auto-reply in this chat (allow-list)",
            _set_rule("allow", "✅ Auto-replies allowed for"), takes_user=True, example="allow @alice_smith"),
    Command("deny", "deny [user id|@username]", "never auto-reply in this chat",
            _set_rule("deny", "🚫 No auto-replies for"), takes_user=True, example="deny 123456789"),
    Command("unlist", "unlist [user id|@username]", "remove a chat from the allow/deny lists",
            _set_rule("", "↩️ Default rules again for"), takes_user=True, example="unlist @alice_smith"),
    Command("cooldown", "cooldown <minutes>", "least time between two auto-replies in one chat", cooldown,
            example="cooldown 10"),
)
