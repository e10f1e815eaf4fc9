"""Should this message get an auto-reply? Pure decisions over plain values.

`screen` rejects what never gets a reply whatever the settings (Telegram's service
account, bots, the account itself, service messages, non-private chats) without any
database work. `decide` then applies the owner's settings and the chat's state, and
says how the loop-protection state moves.
"""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from shared.core.config import AutoReplyConfig
from userbot.incoming import IncomingMessage

# Telegram's own account: login codes and service notices arrive from it as private messages.
TELEGRAM_SERVICE_ID = 777000
# Telegram dates messages in whole seconds.
DATE_RESOLUTION = dt.timedelta(seconds=1)


class Reason(str, enum.Enum):
    """Why a message gets a reply (REPLY) or not (everything else)."""
    REPLY = "reply"
    NOT_PRIVATE = "not_private"
    SERVICE_MESSAGE = "service_message"
    SELF = "self"
    TELEGRAM = "telegram_service"
    BOT = "bot"
    NO_TEXT = "no_text"
    OFF = "off"
    TOO_OLD = "too_old"
    DENIED = "denied"
    NOT_ALLOWED = "not_allowed"
    NOT_CONTACT = "not_contact"
    MUTED = "muted"
    OUTSIDE_HOURS = "outside_hours"
    LOOP_PAUSED = "loop_paused"
    LOOP_DETECTED = "loop_detected"
    COOLDOWN = "cooldown"

    def __str__(self) -> str:
        return self.value


# Reasons after which the message is still worth keeping as context for a later reply.
_KEEP_CONTEXT = frozenset({Reason.REPLY, Reason.OFF, Reason.TOO_OLD, Reason.OUTSIDE_HOURS,
                           Reason.COOLDOWN, Reason.LOOP_PAUSED, Reason.LOOP_DETECTED})


@dataclass(frozen=True)
class WorkingHours:
    """A daily UTC time range; `end` before `start` means it runs over midnight."""
    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> WorkingHours | None:
        """"09:00-18:00" -> WorkingHours; "" -> None (always). Config validated the format."""
        if not text.strip():
            return None
        start, end = (dt.time.fromisoformat(part.strip()) for part in text.split("-"))
        return cls(start, end)

    def contains(self, moment: dt.datetime) -> bool:
        t = moment.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class Policy:
    """The auto-reply settings in force: config, overridden by the owner's commands."""
    enabled: bool = True
    mode: str = "all"
    cooldown: dt.timedelta = dt.timedelta(seconds=30)
    contacts_only: bool = False
    working_hours: WorkingHours | None = None
    max_age: dt.timedelta | None = dt.timedelta(minutes=720)
    skip_muted: bool = True
    loop_fast_reply: dt.timedelta = dt.timedelta(seconds=5)
    loop_max_fast_exchanges: int = 3
    loop_pause: dt.timedelta = dt.timedelta(minutes=360)

    @classmethod
    def from_config(cls, config: AutoReplyConfig, *, enabled: bool | None = None,
                    cooldown_seconds: int | None = None) -> Policy:
        return cls(
            enabled=config.enabled if enabled is None else enabled,
            mode=config.mode,
            cooldown=dt.timedelta(seconds=config.cooldown_seconds if cooldown_seconds is None
                                  else cooldown_seconds),
            contacts_only=config.contacts_only,
            working_hours=WorkingHours.parse(config.working_hours),
            max_age=(dt.timedelta(minutes=config.max_message_age_minutes)
                     if config.max_message_age_minutes else None),
            skip_muted=config.skip_muted,
            loop_fast_reply=dt.timedelta(seconds=config.loop_fast_reply_seconds),
            loop_max_fast_exchanges=config.loop_max_fast_exchanges,
            loop_pause=dt.timedelta(minutes=config.loop_pause_minutes),
        )


@dataclass(frozen=True)
class ChatView:
    """What the bot remembers about one chat."""
    rule: str = ""                              # "", "allow" or "deny"
    last_reply_at: dt.datetime | None = None
    last_incoming_at: dt.datetime | None = None   # when we last processed a message of theirs
    fast_exchanges: int = 0
    paused_until: dt.datetime | None = None


@dataclass(frozen=True)
class Decision:
    reason: Reason
    fast_exchanges: int = 0                     # the chat's new count of quick answers in a row
    paused_until: dt.datetime | None = None     # the chat's new pause (loop protection)

    @property
    def reply(self) -> bool:
        return self.reason is Reason.REPLY

    @property
    def keep_context(self) -> bool:
        return self.reason in _KEEP_CONTEXT


def screen(msg: IncomingMessage) -> Reason | None:
    """The reason this message never gets a reply, whatever the settings; None if it may."""
    if not msg.is_private:
        return Reason.NOT_PRIVATE
    if msg.is_self:
        return Reason.SELF
    if msg.chat_id == TELEGRAM_SERVICE_ID or msg.sender_id == TELEGRAM_SERVICE_ID:
        return Reason.TELEGRAM
    if msg.is_bot:
        return Reason.BOT
    if msg.is_service:
        return Reason.SERVICE_MESSAGE
    if not msg.text.strip():
        return Reason.NO_TEXT
    return None


def decide(msg: IncomingMessage, policy: Policy, chat: ChatView, now: dt.datetime) -> Decision:
    """Whether to reply to `msg` at `now`, and the chat's loop-protection state afterwards."""
    screened = screen(msg)
    if screened is not None:
        return Decision(screened, chat.fast_exchanges, chat.paused_until)
    reason = _who_and_when(msg, policy, chat, now)
    if reason is not None:
        return Decision(reason, chat.fast_exchanges, chat.paused_until)
    if chat.paused_until is not None and now < chat.paused_until:
        return Decision(Reason.LOOP_PAUSED, chat.fast_exchanges, chat.paused_until)
    fast = _fast_exchanges(msg, policy, chat)
    if fast >= policy.loop_max_fast_exchanges:
        return Decision(Reason.LOOP_DETECTED, 0, now + policy.loop_pause)
    if chat.last_reply_at is not None and now - chat.last_reply_at < policy.cooldown:
        return Decision(Reason.COOLDOWN, fast, None)
    return Decision(Reason.REPLY, fast, None)


def _who_and_when(msg: IncomingMessage, policy: Policy, chat: ChatView, now: dt.datetime) -> Reason | None:
    if chat.rule == "deny":
        return Reason.DENIED
    if policy.mode == "allow" and chat.rule != "allow":
        return Reason.NOT_ALLOWED
    if policy.contacts_only and not msg.is_contact:
        return Reason.NOT_CONTACT
    if policy.skip_muted and msg.is_muted:
        return Reason.MUTED
    if not policy.enabled:
        return Reason.OFF
    if policy.max_age is not None and now - msg.date > policy.max_age:
        return Reason.TOO_OLD
    if policy.working_hours is not None and not policy.working_hours.contains(now):
        return Reason.OUTSIDE_HOURS
    return None


def _fast_exchanges(msg: IncomingMessage, policy: Policy, chat: ChatView) -> int:
    """Quick answers to our replies in a row, counting `msg`.

    An answer is the first message after one of our replies; it is quick when it was
    sent within `loop_fast_reply` of the reply (no person reads and types that fast).
    A slow message ends the run. Follow-ups in a person's burst are no answers, and a
    message sent before our reply (Telegram dates have whole seconds) answers nothing.
    """
    if chat.last_reply_at is None:
        return chat.fast_exchanges
    delay = msg.date - chat.last_reply_at
    if delay > policy.loop_fast_reply:
        return 0
    first_after_reply = chat.last_incoming_at is None or chat.last_incoming_at <= chat.last_reply_at
    if not first_after_reply or delay < -DATE_RESOLUTION:
        return chat.fast_exchanges
    return chat.fast_exchanges + 1
