"""What a bot keeps in the database: its switches, chat rules and names, chat state,
context, and the fate of every message it received. Blocking functions; the bot runs
them off its loop.

Every row carries the bot's name, so several bots (several accounts) share one database.
A message's row moves pending -> claimed (by one process) -> replied / merged / a reason;
the unique row is what makes each message answered at most once.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from shared.core.db import conflict_target, database
from shared.core.models import ChatMessage, ChatRollup, ChatState, HandledMessage, Setting, utcnow
from shared.core.query_rows import tuple_rows
from userbot.guards import HELD, ChatView, Pending

ENABLED = "autoreply.enabled"
COOLDOWN = "autoreply.cooldown_seconds"
PAUSED_UNTIL = "autoreply.paused_until"       # the owner's `.pause` of every chat
OWNER_ACTIVE = "owner.last_active"            # the owner's last message from another session
OWNER_ONLINE = "owner.online"                 # "on"/"off": the account's presence, when Telegram tells
DIGEST_SINCE = "digest.since"                 # the start of the period the next digest covers

# Roles of context messages and the chat-completions role each one becomes.
CONTACT, OWNER, AUTO = "contact", "owner", "auto"
MODEL_ROLES = {CONTACT: "user", OWNER: "assistant", AUTO: "assistant"}

# What becomes of a message (HandledMessage.outcome).
PENDING = "pending"          # waiting for the quiet period, the cooldown, the owner ...
CLAIMED = "claimed"          # a process is answering it now
REPLIED = "replied"          # answered (the last message of its burst)
MERGED = "merged"            # answered together with later messages, by `reply_id`
OWNER_REPLIED = "owner_replied"
COMMAND_DONE = "done"        # a command that ran
# Kinds: a contact's text, media answered without the model, a photo the model looks at, the owner's command.
MESSAGE, MEDIA, PHOTO, COMMAND = "message", "media", "photo", "command"


@dataclass(frozen=True)
class Switches:
    """The owner's run-time overrides of config (None: config decides), and the global pause."""
    enabled: bool | None = None
    cooldown_seconds: int | None = None
    paused_until: dt.datetime | None = None


@dataclass(frozen=True)
class ContextLine:
    role: str               # CONTACT, OWNER or AUTO
    text: str
    at: dt.datetime
    message_id: int = 0


@dataclass(frozen=True)
class ChatRule:
    chat_id: int
    rule: str               # "allow" or "deny"
    label: str


@dataclass(frozen=True)
class Fate:
    """One message and what became of it, for `.recent`, the digest and the logs."""
    chat_id: int
    message_id: int
    kind: str
    text: str
    at: dt.datetime
    outcome: str
    reply_id: int | None
    detail: str
    name: str               # the chat's display name (or @username, or the id)
    username: str

    def describe(self) -> str:
        return describe_outcome(self.outcome, self.reply_id, self.detail)


def describe_outcome(outcome: str, reply_id: int | None = None, detail: str = "") -> str:
    """"answered", "merged into reply N", "waiting: cooldown", "skipped: reason"."""
    if outcome == REPLIED:
        return "answered"
    if outcome == MERGED:
        return f"merged into reply {reply_id}" if reply_id else "merged into the next reply"
    if outcome == PENDING:
        if detail.startswith(HELD):
            return detail
        return f"waiting: {detail}" if detail else "waiting"
    if outcome == CLAIMED:
        return "being answered"
    if outcome == COMMAND_DONE:
        return "command"
    return f"skipped: {outcome}" + (f" ({detail})" if detail else "")


def chat_name(label: str, username: str, chat_id: int) -> str:
    return label or (f"@{username}" if username else str(chat_id))


class Store:
    """The database side of one bot."""

    def __init__(self, bot: str):
        self.bot = bot

    # --- switches ---------------------------------------------------------------------------

    def switches(self) -> Switches:
        rows = self._settings(ENABLED, COOLDOWN, PAUSED_UNTIL)
        enabled = rows.get(ENABLED)
        cooldown = rows.get(COOLDOWN)
        paused = rows.get(PAUSED_UNTIL)
        return Switches(enabled=None if enabled is None else enabled == "on",
                        cooldown_seconds=None if cooldown is None else int(cooldown),
                        paused_until=dt.datetime.fromisoformat(paused) if paused else None)

    def set_enabled(self, on: bool) -> None:
        self._set(ENABLED, "on" if on else "off")

    def set_cooldown(self, seconds: int) -> None:
        self._set(COOLDOWN, str(int(seconds)))

    def set_paused_until(self, until: dt.datetime | None) -> None:
        """Pause every chat until `until` (None: lift the pause)."""
        self._set(PAUSED_UNTIL, until.isoformat() if until else "")

    def owner_presence(self) -> tuple[dt.datetime | None, bool | None]:
        """When the owner last wrote from another session, and whether Telegram says they are online."""
        rows = self._settings(OWNER_ACTIVE, OWNER_ONLINE)
        active = rows.get(OWNER_ACTIVE)
        online = rows.get(OWNER_ONLINE)
        return (dt.datetime.fromisoformat(active) if active else None,
                None if not online else online == "on")

    def note_owner_active(self, at: dt.datetime) -> dt.datetime | None:
        """Record the owner's activity; returns the previous one."""
        previous, _online = self.owner_presence()
        if previous is None or at > previous:
            self._set(OWNER_ACTIVE, at.isoformat())
        return previous

    def note_owner_online(self, online: bool, at: dt.datetime) -> None:
        self._set(OWNER_ONLINE, "on" if online else "off")
        if online:
            self.note_owner_active(at)

    def digest_since(self) -> dt.datetime | None:
        value = self._settings(DIGEST_SINCE).get(DIGEST_SINCE)
        return dt.datetime.fromisoformat(value) if value else None

    def set_digest_since(self, at: dt.datetime) -> None:
        self._set(DIGEST_SINCE, at.isoformat())

    def _settings(self, *names: str) -> dict[str, str]:
        return {s.name: s.value for s in Setting.select().where(
            (Setting.scope == self.bot) & Setting.name.in_(list(names)))}

    def _set(self, name: str, value: str) -> None:
        now = utcnow()
        (Setting.insert(scope=self.bot, name=name, value=value, updated_at=now)
         .on_conflict(update={Setting.value: value, Setting.updated_at: now},
                      **conflict_target(database.obj, [Setting.scope, Setting.name]))
         .execute())

    # --- chat rules, names and state ------------------------------------------------------

    def set_rule(self, chat_id: int, rule: str, label: str = "") -> None:
        """Allow or deny auto-replies in a chat ("" removes the rule)."""
        if rule not in ("", "allow", "deny"):
            raise ValueError(f"unknown rule {rule!r}")
        self._ensure_chat(chat_id)
        fields = {ChatState.rule: rule, ChatState.updated_at: utcnow()}
        if label and not ChatState.select().where(self._chat(chat_id) & (ChatState.label != "")).exists():
            fields[ChatState.label] = label[:100]
        ChatState.update(fields).where(self._chat(chat_id)).execute()

    def rules(self) -> list[ChatRule]:
        query = (ChatState.select().where((ChatState.bot == self.bot) & (ChatState.rule != ""))
                 .order_by(ChatState.rule, ChatState.chat_id))
        return [ChatRule(row.chat_id, row.rule, row.label or (f"@{row.username}" if row.username else ""))
                for row in query]

    def note_chat(self, chat_id: int, label: str, username: str) -> None:
        """Keep the chat's display name and username as they are now."""
        self._ensure_chat(chat_id)
        label, username = label[:100], (username or "")[:64]
        (ChatState.update({ChatState.label: label, ChatState.username: username})
         .where(self._chat(chat_id) & ((ChatState.label != label) | (ChatState.username != username)))
         .execute())

    def set_new_chat(self, chat_id: int, new: bool) -> None:
        self._ensure_chat(chat_id)
        ChatState.update({ChatState.new_chat: new}).where(self._chat(chat_id) & ChatState.new_chat.is_null()).execute()

    def chat_view(self, chat_id: int) -> ChatView:
        row = ChatState.get_or_none(self._chat(chat_id))
        if row is None:
            return ChatView(known=False)
        return ChatView(rule=row.rule, last_reply_at=row.last_reply_at, last_incoming_at=row.last_incoming_at,
                        fast_exchanges=row.fast_exchanges, paused_until=row.paused_until,
                        owner_paused_until=row.owner_paused_until, persona=row.persona or "",
                        daily_token_cap=row.daily_token_cap, new_chat=row.new_chat,
                        name=chat_name(row.label, row.username, chat_id), username=row.username)

    def save_loop_state(self, chat_id: int, fast_exchanges: int, paused_until: dt.datetime | None,
                        now: dt.datetime) -> None:
        self._ensure_chat(chat_id)
        (ChatState.update({ChatState.fast_exchanges: fast_exchanges, ChatState.paused_until: paused_until,
                           ChatState.last_incoming_at: now, ChatState.updated_at: now})
         .where(self._chat(chat_id)).execute())

    def note_reply(self, chat_id: int, at: dt.datetime) -> None:
        self._ensure_chat(chat_id)
        (ChatState.update({ChatState.last_reply_at: at, ChatState.replies: ChatState.replies + 1,
                           ChatState.updated_at: at})
         .where(self._chat(chat_id)).execute())

    def pause_chat(self, chat_id: int, until: dt.datetime | None) -> None:
        """The owner's hands-off pause of one chat (None lifts it)."""
        self._ensure_chat(chat_id)
        ChatState.update({ChatState.owner_paused_until: until}).where(self._chat(chat_id)).execute()

    def resume(self, chat_id: int | None = None) -> int:
        """Lift the owner's and loop protection's pauses (of one chat, or of all); returns chats changed."""
        where = (ChatState.bot == self.bot) & (ChatState.owner_paused_until.is_null(False)
                                               | ChatState.paused_until.is_null(False)
                                               | (ChatState.fast_exchanges != 0))
        if chat_id is not None:
            where &= ChatState.chat_id == chat_id
        return (ChatState.update({ChatState.owner_paused_until: None, ChatState.paused_until: None,
                                  ChatState.fast_exchanges: 0}).where(where).execute())

    def paused_chats(self, now: dt.datetime) -> list[tuple[str, dt.datetime, str]]:
        """(name, until, why) of every chat paused now."""
        out = []
        query = ChatState.select().where((ChatState.bot == self.bot) & (
            (ChatState.owner_paused_until > now) | (ChatState.paused_until > now)))
        for row in query:
            name = chat_name(row.label, row.username, row.chat_id)
            if row.owner_paused_until and row.owner_paused_until > now:
                out.append((name, row.owner_paused_until, "owner"))
            if row.paused_until and row.paused_until > now:
                out.append((name, row.paused_until, "loop"))
        return out

    def set_persona(self, chat_id: int, persona: str | None) -> None:
        self._ensure_chat(chat_id)
        ChatState.update({ChatState.persona: persona}).where(self._chat(chat_id)).execute()

    def set_cap(self, chat_id: int, tokens: int | None) -> None:
        self._ensure_chat(chat_id)
        ChatState.update({ChatState.daily_token_cap: tokens}).where(self._chat(chat_id)).execute()

    def tokens_on(self, chat_id: int, day: dt.date) -> int:
        """Tokens auto-replies in this chat used on a UTC day (from the chat rollup)."""
        return int(ChatRollup.select(pw.fn.COALESCE(pw.fn.SUM(ChatRollup.total_tokens), 0))
                   .where((ChatRollup.bot == self.bot) & (ChatRollup.chat_id == chat_id)
                          & (ChatRollup.day == day)).scalar() or 0)

    def _ensure_chat(self, chat_id: int) -> None:
        ChatState.insert(bot=self.bot, chat_id=chat_id, updated_at=utcnow()).on_conflict_ignore().execute()

    def _chat(self, chat_id: int):
        return (ChatState.bot == self.bot) & (ChatState.chat_id == chat_id)

    # --- each message's fate ----------------------------------------------------------------

    def record(self, chat_id: int, message_id: int, text: str, received_at: dt.datetime, now: dt.datetime,
               *, outcome: str = PENDING, kind: str = MESSAGE, claimed_by: str = "", detail: str = "") -> bool:
        """Record a message once; False when it was recorded before (a duplicate update,
        or an earlier run of this bot), so no message is ever decided twice."""
        try:
            with database.atomic():
                HandledMessage.insert(bot=self.bot, chat_id=chat_id, message_id=message_id, decided_at=now,
                                      outcome=outcome, kind=kind, text=text[:4096], received_at=received_at,
                                      claimed_by=claimed_by[:128], detail=detail[:200],
                                      settled_at=None if outcome in (PENDING, CLAIMED) else now).execute()
        except pw.IntegrityError:
            return False
        return True

    def claim_command(self, chat_id: int, message_id: int, text: str, now: dt.datetime, claimer: str) -> bool:
        """Claim the owner's command message; False when it ran (or is running) already."""
        return self.record(chat_id, message_id, text, now, now, outcome=CLAIMED, kind=COMMAND, claimed_by=claimer)

    def claim(self, chat_id: int, message_id: int, now: dt.datetime) -> bool:
        """Record a message as claimed at once (no waiting); False when it was recorded before."""
        return self.record(chat_id, message_id, "", now, now, outcome=CLAIMED)

    def pending(self, chat_id: int) -> list[Pending]:
        query = (HandledMessage.select().where(self._rows(chat_id) & (HandledMessage.outcome == PENDING))
                 .order_by(HandledMessage.message_id))
        return [Pending(r.id, r.message_id, r.text or "", r.received_at or r.decided_at, r.decided_at,
                        media=r.kind == MEDIA, photo=r.kind == PHOTO, waited=r.detail or "") for r in query]

    def chats_with_pending(self) -> list[int]:
        query = (HandledMessage.select(HandledMessage.chat_id).distinct()
                 .where((HandledMessage.bot == self.bot) & (HandledMessage.outcome == PENDING)))
        return sorted(r.chat_id for r in query)

    def note_waiting(self, row_ids: list[int], why: str) -> None:
        if row_ids:
            (HandledMessage.update(detail=why[:200])
             .where(HandledMessage.id.in_(row_ids) & (HandledMessage.outcome == PENDING)).execute())

    def claim_rows(self, row_ids: list[int], claimer: str, now: dt.datetime) -> bool:
        """Take pending rows for answering; False (and nothing taken) when another process got one first."""
        with database.atomic():
            taken = (HandledMessage.update(outcome=CLAIMED, claimed_by=claimer[:128], decided_at=now, detail="")
                     .where(HandledMessage.id.in_(row_ids) & (HandledMessage.outcome == PENDING)).execute())
            if taken != len(row_ids):
                (HandledMessage.update(outcome=PENDING, claimed_by="")
                 .where(HandledMessage.id.in_(row_ids) & (HandledMessage.claimed_by == claimer[:128])
                        & (HandledMessage.outcome == CLAIMED)).execute())
                return False
        return True

    def settle_rows(self, row_ids: list[int], outcome: str, now: dt.datetime, *, reply_id: int | None = None,
                    detail: str = "") -> None:
        if row_ids:
            (HandledMessage.update(outcome=outcome[:32], settled_at=now, reply_id=reply_id, detail=detail[:200])
             .where(HandledMessage.id.in_(row_ids)).execute())

    def settle(self, chat_id: int, message_id: int, outcome: str) -> None:
        (HandledMessage.update(outcome=outcome[:32], settled_at=utcnow())
         .where(self._rows(chat_id) & (HandledMessage.message_id == message_id)).execute())

    def settle_answered(self, row_ids: list[int], reply_id: int | None, now: dt.datetime, detail: str = "") -> None:
        """The burst `row_ids` (oldest first) was answered by `reply_id`: the last one is
        "replied", the earlier ones "merged" into it."""
        if not row_ids:
            return
        self.settle_rows(row_ids[:-1], MERGED, now, reply_id=reply_id, detail=detail)
        self.settle_rows(row_ids[-1:], REPLIED, now, reply_id=reply_id, detail=detail)

    def settle_owner_answered(self, chat_id: int, before: dt.datetime, now: dt.datetime) -> int:
        """The owner wrote in the chat: what was waiting there is theirs now."""
        return (HandledMessage.update(outcome=OWNER_REPLIED, settled_at=now)
                .where(self._rows(chat_id) & (HandledMessage.outcome == PENDING)
                       & (HandledMessage.kind != COMMAND)
                       & (pw.fn.COALESCE(HandledMessage.received_at, HandledMessage.decided_at) <= before))
                .execute())

    def release(self, row_ids: list[int]) -> None:
        """Give claimed rows back (to be answered again)."""
        if row_ids:
            (HandledMessage.update(outcome=PENDING, claimed_by="")
             .where(HandledMessage.id.in_(row_ids) & (HandledMessage.outcome == CLAIMED)).execute())

    def stale_claims(self, claimer: str) -> dict[int, list[tuple[int, int, str]]]:
        """Claims left by another process of this bot (a dead one): chat -> [(row id, message id, kind)]."""
        query = (HandledMessage.select().where((HandledMessage.bot == self.bot)
                                               & (HandledMessage.outcome == CLAIMED)
                                               & (HandledMessage.claimed_by != claimer[:128]))
                 .order_by(HandledMessage.chat_id, HandledMessage.message_id))
        out: dict[int, list[tuple[int, int, str]]] = {}
        for row in query:
            out.setdefault(row.chat_id, []).append((row.id, row.message_id, row.kind))
        return out

    def outcome(self, chat_id: int, message_id: int) -> str | None:
        row = HandledMessage.get_or_none(self._rows(chat_id) & (HandledMessage.message_id == message_id))
        return row.outcome if row else None

    def replies_since(self, since: dt.datetime, chat_id: int | None = None) -> int:
        """Replies sent since `since` (a burst answered once counts once)."""
        where = ((HandledMessage.bot == self.bot) & (HandledMessage.outcome == REPLIED)
                 & (pw.fn.COALESCE(HandledMessage.settled_at, HandledMessage.decided_at) >= since))
        if chat_id is not None:
            where &= HandledMessage.chat_id == chat_id
        return HandledMessage.select().where(where).count()

    def fates(self, since: dt.datetime | None = None, limit: int = 20, chat_id: int | None = None) -> list[Fate]:
        """Contacts' messages and their fate, newest first."""
        where = (HandledMessage.bot == self.bot) & (HandledMessage.kind != COMMAND)
        if since is not None:
            where &= HandledMessage.decided_at >= since
        if chat_id is not None:
            where &= HandledMessage.chat_id == chat_id
        h = HandledMessage
        query = (h.select(h.chat_id, h.message_id, h.kind, h.text, h.received_at, h.decided_at, h.outcome,
                          h.reply_id, h.detail, ChatState.label, ChatState.username)
                 .join(ChatState, pw.JOIN.LEFT_OUTER, on=(ChatState.bot == h.bot) & (ChatState.chat_id == h.chat_id))
                 .where(where).order_by(h.id.desc()).limit(limit))
        return [Fate(chat, message, kind, text or "", received or decided, outcome, reply, detail,
                     chat_name(label or "", username or "", chat), username or "")
                for chat, message, kind, text, received, decided, outcome, reply, detail, label, username
                in tuple_rows(query)]

    def prune_handled(self, before: dt.datetime) -> int:
        return (HandledMessage.delete()
                .where((HandledMessage.bot == self.bot) & (HandledMessage.decided_at < before)
                       & (HandledMessage.outcome.not_in([PENDING, CLAIMED]))).execute())

    def _rows(self, chat_id: int):
        return (HandledMessage.bot == self.bot) & (HandledMessage.chat_id == chat_id)

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
        return [ContextLine(r.role, r.text, r.at, r.message_id) for r in reversed(list(rows))]

    def trim(self, chat_id: int, keep: int) -> int:
        """Forget all but the chat's newest `keep` messages."""
        boundary = (ChatMessage.select(ChatMessage.id).where(self._messages(chat_id))
                    .order_by(ChatMessage.id.desc()).offset(keep).limit(1).scalar())
        if boundary is None:
            return 0
        return ChatMessage.delete().where(self._messages(chat_id) & (ChatMessage.id <= boundary)).execute()

    def _messages(self, chat_id: int):
        return (ChatMessage.bot == self.bot) & (ChatMessage.chat_id == chat_id)
