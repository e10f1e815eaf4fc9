"""When does a message get an auto-reply? Pure decisions over plain values.

`screen` rejects what never gets a reply whatever the settings (Telegram's service
account, bots, the account itself, service messages, non-private chats) without any
database work. `admit` applies the owner's choice of recipients when a message arrives;
`observe` moves loop protection; `plan` then decides, for the messages a chat has
waiting, which are answered now (together, as one burst), which are settled without a
reply (and why), and how long the rest wait. Waiting is the rule: a cooldown, the owner's
pause, a cap (a contact's daily token cap: until the next UTC day) or auto-replies being
off delay a message, never drop it (only its age does).
"""
from __future__ import annotations

import dataclasses
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
    """Why a message gets a reply (REPLY), waits, or gets none."""
    REPLY = "reply"
    NOT_PRIVATE = "not_private"
    SERVICE_MESSAGE = "service_message"
    SELF = "self"
    TELEGRAM = "telegram_service"
    BOT = "bot"
    NO_TEXT = "no_text"
    MEDIA = "media"
    OFF = "off"
    PAUSED = "paused"
    TOO_OLD = "too_old"
    DENIED = "denied"
    NOT_ALLOWED = "not_allowed"
    NOT_CONTACT = "not_contact"
    NOT_RECIPIENT = "not_recipient"
    MUTED = "muted"
    OUTSIDE_HOURS = "outside_hours"
    OWNER_PAUSED = "owner_paused"
    OWNER_PRESENT = "owner_present"
    LOOP_PAUSED = "loop_paused"
    LOOP_DETECTED = "loop_detected"
    COOLDOWN = "cooldown"
    QUIET = "quiet"
    CHAT_CAP = "chat_hourly_cap"
    GLOBAL_CAP = "global_minute_cap"
    DAILY_CAP = "daily_token_cap"

    def __str__(self) -> str:
        return self.value


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

    def next_start(self, moment: dt.datetime) -> dt.datetime:
        start = dt.datetime.combine(moment.date(), self.start)
        return start if start > moment else start + dt.timedelta(days=1)


@dataclass(frozen=True)
class Recipients:
    """Telegram Business's choice of recipients: both questions must say yes."""
    contacts: bool = True
    non_contacts: bool = True
    existing_chats: bool = True
    new_chats: bool = True

    @property
    def needs_chat_age(self) -> bool:
        return self.existing_chats != self.new_chats

    def admits(self, is_contact: bool, new_chat: bool | None) -> bool:
        if not (self.contacts if is_contact else self.non_contacts):
            return False
        if new_chat is None or not self.needs_chat_age:
            return self.existing_chats or self.new_chats
        return self.new_chats if new_chat else self.existing_chats


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
    loop_typing_cps: float = 10.0
    loop_max_fast_exchanges: int = 3
    loop_pause: dt.timedelta = dt.timedelta(minutes=360)
    quiet: dt.timedelta = dt.timedelta(0)
    owner_pause: dt.timedelta = dt.timedelta(minutes=30)
    chat_hourly_cap: int = 0
    global_minute_cap: int = 0
    only_when_away: bool = False
    away_after: dt.timedelta = dt.timedelta(minutes=10)
    recipients: Recipients = Recipients()
    media: str = "ignore"
    media_by_kind: tuple[tuple[str, str], ...] = ()   # (kind, behaviour) where a kind has its own
    paused_until: dt.datetime | None = None         # the owner's `.pause` of every chat

    def media_mode(self, kind: str) -> str:
        """"ignore", "text" or (photos) "vision": what a message of this media kind gets."""
        return dict(self.media_by_kind).get(kind, self.media)

    @classmethod
    def from_config(cls, config: AutoReplyConfig, *, enabled: bool | None = None,
                    cooldown_seconds: int | None = None, paused_until: dt.datetime | None = None) -> Policy:
        r = config.recipients
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
            loop_typing_cps=config.loop_typing_chars_per_second,
            loop_max_fast_exchanges=config.loop_max_fast_exchanges,
            loop_pause=dt.timedelta(minutes=config.loop_pause_minutes),
            quiet=dt.timedelta(seconds=config.reply_after_quiet_seconds),
            owner_pause=dt.timedelta(minutes=config.owner_pause_minutes),
            chat_hourly_cap=config.max_replies_per_chat_per_hour,
            global_minute_cap=config.max_replies_per_minute,
            only_when_away=config.only_when_away,
            away_after=dt.timedelta(minutes=config.away_after_minutes),
            recipients=Recipients(r.contacts, r.non_contacts, r.existing_chats, r.new_chats),
            media=config.media,
            media_by_kind=tuple((kind, mode) for kind, mode in dataclasses.asdict(config.media_by_kind).items()
                                if mode is not None),
            paused_until=paused_until,
        )


@dataclass(frozen=True)
class ChatView:
    """What the bot remembers about one chat."""
    rule: str = ""                              # "", "allow" or "deny"
    last_reply_at: dt.datetime | None = None    # when our last reply was sent
    last_incoming_at: dt.datetime | None = None   # when we last received a message of theirs
    fast_exchanges: int = 0
    paused_until: dt.datetime | None = None     # loop protection
    owner_paused_until: dt.datetime | None = None
    persona: str = ""
    daily_token_cap: int | None = None
    new_chat: bool | None = None
    name: str = ""
    username: str = ""
    known: bool = True                          # False: the bot never saw this chat before


@dataclass(frozen=True)
class Pending:
    """A message waiting for its answer."""
    row_id: int
    message_id: int
    text: str
    date: dt.datetime                           # Telegram's date
    received: dt.datetime                       # when the bot recorded it
    media: bool = False                         # a photo, voice note, ... without text
    photo: bool = False                         # a photo the model looks at ("vision"); text is its caption
    waited: str = ""                            # why it waited last (kept when its age ends the wait)


@dataclass(frozen=True)
class Load:
    """What the caps and the owner's presence look like right now."""
    chat_replies_last_hour: int = 0
    replies_last_minute: int = 0
    owner_away: bool = True
    chat_tokens_today: int = 0                  # the contact's tokens this UTC day (for `.cap`)


@dataclass(frozen=True)
class Plan:
    answer: tuple[Pending, ...] = ()            # one burst, answered by one reply now
    skip: tuple[tuple[Pending, Reason], ...] = ()
    waiting: Reason | None = None               # why the rest waits
    wait_until: dt.datetime | None = None       # when it may end (None: look again soon)


@dataclass(frozen=True)
class LoopState:
    fast_exchanges: int
    paused_until: dt.datetime | None
    detected: bool = False


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
    if not msg.text.strip() and not msg.media:
        return Reason.NO_TEXT
    return None


def admit(msg: IncomingMessage, policy: Policy, chat: ChatView) -> Reason | None:
    """Whether the owner wants this sender answered at all (checked when the message arrives)."""
    rule = _rule(policy, chat)
    if rule is not None:
        return rule
    if chat.rule != "allow":
        if policy.contacts_only and not msg.is_contact:
            return Reason.NOT_CONTACT
        if not policy.recipients.admits(msg.is_contact, chat.new_chat):
            return Reason.NOT_RECIPIENT
        if policy.skip_muted and msg.is_muted:
            return Reason.MUTED
    if msg.media and not msg.text.strip() and policy.media_mode(msg.media) == "ignore":
        return Reason.MEDIA
    return None


def _rule(policy: Policy, chat: ChatView) -> Reason | None:
    if chat.rule == "deny":
        return Reason.DENIED
    if policy.mode == "allow" and chat.rule != "allow":
        return Reason.NOT_ALLOWED
    return None


def observe(msg: IncomingMessage, policy: Policy, chat: ChatView, now: dt.datetime) -> LoopState:
    """Loop protection when a message arrives: `loop_max_fast_exchanges` answers in a row
    that came faster after our reply was *sent* than a person reads and types pause the chat.

    "Faster than a person" is `loop_fast_reply` plus the time to type the answer at
    `loop_typing_cps` characters a second, so an automated answerer is caught whatever its
    AI's latency: a 200-character answer 10 s after our reply is no person's.
    A slow message ends the run. Follow-ups in a person's burst are no answers, and a
    message sent before our reply (Telegram dates have whole seconds) answers nothing."""
    if chat.paused_until is not None and now < chat.paused_until:
        return LoopState(chat.fast_exchanges, chat.paused_until)
    if chat.last_reply_at is None:
        return LoopState(chat.fast_exchanges, None)
    delay = msg.date - chat.last_reply_at
    human = policy.loop_fast_reply + dt.timedelta(seconds=len(msg.text) / max(policy.loop_typing_cps, 0.1))
    if delay > human:
        return LoopState(0, None)
    first_after_reply = chat.last_incoming_at is None or chat.last_incoming_at <= chat.last_reply_at
    if not first_after_reply or delay < -DATE_RESOLUTION:
        return LoopState(chat.fast_exchanges, None)
    fast = chat.fast_exchanges + 1
    if fast >= policy.loop_max_fast_exchanges:
        return LoopState(0, now + policy.loop_pause, detected=True)
    return LoopState(fast, None)


def plan(pending: list[Pending], policy: Policy, chat: ChatView, now: dt.datetime, load: Load = Load()) -> Plan:
    """What to do now with the messages `pending` in one chat (oldest first)."""
    if not pending:
        return Plan()
    skip: list[tuple[Pending, Reason]] = []
    rule = _rule(policy, chat)
    if rule is not None:
        return Plan(skip=tuple((p, rule) for p in pending))
    if chat.paused_until is not None and now < chat.paused_until:
        return Plan(skip=tuple((p, Reason.LOOP_PAUSED) for p in pending))
    alive = []
    for p in pending:
        if policy.max_age is not None and now - p.date > policy.max_age:
            skip.append((p, Reason.TOO_OLD))
        else:
            alive.append(p)
    if not alive:
        return Plan(skip=tuple(skip))
    oldest_expiry = alive[0].date + policy.max_age if policy.max_age is not None else None
    waiting, until = _wait(alive, policy, chat, now, load)
    if waiting is not None:
        if oldest_expiry is not None and until is not None and until > oldest_expiry:
            until = max(oldest_expiry, now)         # look again when the oldest would expire
        return Plan(skip=tuple(skip), waiting=waiting, wait_until=until)
    return Plan(answer=tuple(alive), skip=tuple(skip))


def _wait(alive: list[Pending], policy: Policy, chat: ChatView, now: dt.datetime,
          load: Load) -> tuple[Reason | None, dt.datetime | None]:
    """Why the chat's messages must wait, and until when (None: look again soon)."""
    if policy.paused_until is not None and now < policy.paused_until:
        return Reason.PAUSED, policy.paused_until
    if not policy.enabled:
        return Reason.OFF, None
    if policy.working_hours is not None and not policy.working_hours.contains(now):
        return Reason.OUTSIDE_HOURS, policy.working_hours.next_start(now)
    if chat.owner_paused_until is not None and now < chat.owner_paused_until:
        return Reason.OWNER_PAUSED, chat.owner_paused_until
    if policy.only_when_away and not load.owner_away:
        return Reason.OWNER_PRESENT, None
    quiet_ends = alive[-1].received + policy.quiet
    if now < quiet_ends:
        return Reason.QUIET, quiet_ends
    if chat.last_reply_at is not None and now - chat.last_reply_at < policy.cooldown:
        return Reason.COOLDOWN, chat.last_reply_at + policy.cooldown
    if policy.chat_hourly_cap and load.chat_replies_last_hour >= policy.chat_hourly_cap:
        return Reason.CHAT_CAP, None
    if policy.global_minute_cap and load.replies_last_minute >= policy.global_minute_cap:
        return Reason.GLOBAL_CAP, None
    if chat.daily_token_cap is not None and load.chat_tokens_today >= chat.daily_token_cap:
        return Reason.DAILY_CAP, next_utc_day(now)
    return None, None


HELD = "held until"     # a wait with a known end, shown as such ("held until 00:00 UTC tomorrow …")


def describe_wait(reason: Reason, chat: ChatView, load: Load, now: dt.datetime) -> str:
    """What `.recent` and the digest say of a waiting message: the reason, or for the daily
    token cap, when the hold ends."""
    if reason is Reason.DAILY_CAP:
        return (f"{HELD} {next_utc_day(now):%H:%M} UTC tomorrow (daily token cap: "
                f"{load.chat_tokens_today:,} of {chat.daily_token_cap or 0:,} tokens used today)")
    return str(reason)


def next_utc_day(now: dt.datetime) -> dt.datetime:
    """When the contact's daily token cap starts again (its day is the UTC day)."""
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time())


def owner_away(last_active: dt.datetime | None, online: bool | None, policy: Policy, now: dt.datetime) -> bool:
    """Away: not online (when Telegram told us) and no message from another session for `away_after`."""
    if online:
        return False
    return last_active is None or now - last_active >= policy.away_after
