"""What a bot keeps in the database: its switches, chat rules, chat state, context and
the messages it has decided about. Blocking functions; the bot runs them off its loop.

Every row carries the bot's name, so several bots (several accounts) share one database.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from shared.core.db import conflict_target, database
from shared.core.models import ChatMessage, ChatState, HandledMessage, Setting, utcnow
from userbot.guards import ChatView, Decision

ENABLED = "autoreply.enabled"
COOLDOWN = "autoreply.cooldown_seconds"

# Roles of context messages and the chat-completions role each one becomes.
CONTACT, OWNER, AUTO = "contact", "owner", "auto"
MODEL_ROLES = {CONTACT: "user", OWNER: "assistant", AUTO: "assistant"}

CLAIMED = "claimed"
REPLIED = "replied"


@dataclass(frozen=True)
class Switches:
    """The owner's run-time overrides of config (None: config decides)."""
    enabled: bool | None = None
    cooldown_seconds: int | None = None


@dataclass(frozen=True)
class ContextLine:
    role: str               # CONTACT, OWNER or AUTO
    text: str
    at: dt.datetime


@dataclass(frozen=True)
class ChatRule:
    chat_id: int
    rule: str               # "allow" or "deny"
    label: str


class Store:
    """The database side of one bot."""

    def __init__(self, bot: str):
        self.bot = bot

    # --- switches ---------------------------------------------------------------------------

    def switches(self) -> Switches:
        rows = {s.name: s.value for s in Setting.select().where(
            (Setting.scope == self.bot) & Setting.name.in_([ENABLED, COOLDOWN]))}
        enabled = rows.get(ENABLED)
        cooldown = rows.get(COOLDOWN)
        return Switches(enabled=None if enabled is None else enabled == "on",
                        cooldown_seconds=None if cooldown is None else int(cooldown))

    def set_enabled(self, on: bool) -> None:
        self._set(ENABLED, "on" if on else "off")

    def set_cooldown(self, seconds: int) -> None:
        self._set(COOLDOWN, str(int(seconds)))

    def _set(self, name: str, value: str) -> None:
        now = utcnow()
        (Setting.insert(scope=self.bot, name=name, value=value, updated_at=now)
         .on_conflict(update={Setting.value: value, Setting.updated_at: now},
                      **conflict_target(database.obj, [Setting.scope, Setting.name]))
         .execute())

    # --- chat rules and state -------------------------------------------------------------

    def set_rule(self, chat_id: int, rule: str, label: str = "") -> None:
        """Allow or deny auto-replies in a chat ("" removes the rule)."""
        if rule not in ("", "allow", "deny"):
            raise ValueError(f"unknown rule {rule!r}")
        self._ensure_chat(chat_id)
        fields = {ChatState.rule: rule, ChatState.updated_at: utcnow()}
        if label:
            fields[ChatState.label] = label[:100]
        ChatState.update(fields).where(self._chat(chat_id)).execute()

    def rules(self) -> list[ChatRule]:
        query = (ChatState.select().where((ChatState.bot == self.bot) & (ChatState.rule != ""))
                 .order_by(ChatState.rule, ChatState.chat_id))
        return [ChatRule(row.chat_id, row.rule, row.label) for row in query]

    def chat_view(self, chat_id: int) -> ChatView:
        row = ChatState.get_or_none(self._chat(chat_id))
        if row is None:
            return ChatView()
        return ChatView(rule=row.rule, last_reply_at=row.last_reply_at, last_incoming_at=row.last_incoming_at,
                        fast_exchanges=row.fast_exchanges, paused_until=row.paused_until)

    def save_decision(self, chat_id: int, decision: Decision, now: dt.datetime) -> None:
        self._ensure_chat(chat_id)
        (ChatState.update({ChatState.fast_exchanges: decision.fast_exchanges,
                           ChatState.paused_until: decision.paused_until,
                           ChatState.last_incoming_at: now, ChatState.updated_at: now})
         .where(self._chat(chat_id)).execute())

    def note_reply(self, chat_id: int, at: dt.datetime) -> None:
        self._ensure_chat(chat_id)
        (ChatState.update({ChatState.last_reply_at: at, ChatState.replies: ChatState.replies + 1,
                           ChatState.updated_at: at})
         .where(self._chat(chat_id)).execute())

    def _ensure_chat(self, chat_id: int) -> None:
        ChatState.insert(bot=self.bot, chat_id=chat_id, updated_at=utcnow()).on_conflict_ignore().execute()

    def _chat(self, chat_id: int):
        return (ChatState.bot == self.bot) & (ChatState.chat_id == chat_id)

    # --- each message decided once ----------------------------------------------------------

    def claim(self, chat_id: int, message_id: int, now: dt.datetime) -> bool:
        """Claim a message for a decision; False when it was claimed before (also by an
        earlier run of this bot), so no message is ever answered twice."""
        try:
            with database.atomic():
                HandledMessage.insert(bot=self.bot, chat_id=chat_id, message_id=message_id,
                                      decided_at=now, outcome=CLAIMED).execute()
        except pw.IntegrityError:
            return False
        return True

    def settle(self, chat_id: int, message_id: int, outcome: str) -> None:
        (HandledMessage.update(outcome=outcome[:32])
         .where((HandledMessage.bot == self.bot) & (HandledMessage.chat_id == chat_id)
                & (HandledMessage.message_id == message_id)).execute())

    def outcome(self, chat_id: int, message_id: int) -> str | None:
        row = HandledMessage.get_or_none((HandledMessage.bot == self.bot) & (HandledMessage.chat_id == chat_id)
                                         & (HandledMessage.message_id == message_id))
        return row.outcome if row else None

    def replies_since(self, since: dt.datetime) -> int:
        return (HandledMessage.select().where((HandledMessage.bot == self.bot) & (HandledMessage.outcome == REPLIED)
                                              & (HandledMessage.decided_at >= since)).count())

    def prune_handled(self, before: dt.datetime) -> int:
        return (HandledMessage.delete()
                .where((HandledMessage.bot == self.bot) & (HandledMessage.decided_at < before)).execute())

    # --- context ----------------------------------------------------------------------------

    def remember(self, chat_id: int, message_id: int, role: str, text: str, at: dt.datetime) -> None:
        """Keep a message as context (once per message id)."""
        if role not in MODEL_ROLES:
            raise ValueError(f"unknown role {role!r}")
        (ChatMessage.insert(bot=self.bot, chat_id=chat_id, message_id=message_id, role=role,
                            text=text[:4096], at=at)
         .on_conflict_ignore().execute())

    def context(self, chat_id: int, limit: int) -> list[ContextLine]:
        """The chat's last `limit` messages, oldest first (in the order they reached the bot)."""
        if limit <= 0:
            return []
        rows = ChatMessage.select().where(self._messages(chat_id)).order_by(ChatMessage.id.desc()).limit(limit)
        return [ContextLine(r.role, r.text, r.at) for r in reversed(list(rows))]

    def trim(self, chat_id: int, keep: int) -> int:
        """Forget all but the chat's newest `keep` messages."""
        boundary = (ChatMessage.select(ChatMessage.id).where(self._messages(chat_id))
                    .order_by(ChatMessage.id.desc()).offset(keep).limit(1).scalar())
        if boundary is None:
            return 0
        return ChatMessage.delete().where(self._messages(chat_id) & (ChatMessage.id <= boundary)).execute()

    def _messages(self, chat_id: int):
        return (ChatMessage.bot == self.bot) & (ChatMessage.chat_id == chat_id)
