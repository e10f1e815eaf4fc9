"""Auto-replies: receive, wait for the right moment, answer a burst once, remember.

`AutoReplier.handle` takes an `IncomingMessage` (plain values) and a `Transport` (how to
send a text, show "typing…", read the chat's history); the Telegram layer and the offline
demo each bring their own transport and share everything here.

A message is recorded as *pending* when it arrives. A chat's pending messages are answered
together, by one reply, once the contact paused (`reply_after_quiet_seconds`) and nothing
makes them wait (cooldown, the owner's pause, caps, auto-replies off); `run_due` looks at
waiting chats again. Before the AI call the burst is *claimed* by this process; a claim
whose process died is settled after a restart by `recover`, with the chat's history
deciding whether a reply already went out.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from shared.ai.client import BookingPaused, BudgetExceeded, ClientError, NoKeyAvailable, TrackedClient
from shared.core.config import Config
from shared.core.db import DatabaseUnavailable
from shared.core.models import utcnow
from shared.core.outbox import enqueue_alert
from shared.core.windows import format_duration
from userbot import guards
from userbot.chunks import split_message
from userbot.fault_injection import AFTER_CLAIM, AFTER_SEND, kill_point
from userbot.guards import ChatView, Load, Pending, Policy, Reason
from userbot.incoming import IncomingMessage
from userbot.photos import MAX_IMAGES_PER_REPLY, caption_of
from userbot.prompt import build_prompt, kind_and_text
from userbot.state import (
    AUTO,
    COMMAND,
    CONTACT,
    MESSAGE,
    OWNER,
    OWNER_REPLIED,
    PENDING,
    PHOTO,
    REPLIED,
    Store,
    Switches,
)

log = logging.getLogger("tokenpool.autoreply")

OPERATION = "autoreply"
# Chat messages kept per chat beyond the context window (room for the owner's context).
KEEP_EXTRA = 8
SWITCHES_KEPT_SECONDS = 1.0  # the owner's switches are read at most this often
CHATS_AT_ONCE = 16          # chats answered concurrently by one `run_due`


class Transport(Protocol):
    """How replies leave and what the chat looks like: Telegram in the bot, a log in the demo."""

    async def send_text(self, chat_id: int, text: str) -> int:
        """Send `text` (at most 4096 characters) to the chat; return the new message's id."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager:
        """Show "typing…" in the chat while the block runs."""

    async def mark_read(self, chat_id: int, max_id: int) -> None:
        """Mark the chat read up to `max_id`."""

    async def replied_after(self, chat_id: int, message_id: int) -> int | None:
        """The id of the account's first message in the chat after `message_id`, or None."""

    async def is_new_chat(self, chat_id: int, message_id: int) -> bool | None:
        """Whether `message_id` began the chat (None: cannot tell)."""

    async def download_photo(self, chat_id: int, message_id: int, max_bytes: int) -> bytes | None:
        """The picture of a photo message, if it has one of at most `max_bytes` (else None)."""


@dataclass
class Handled:
    """What became of one incoming message (or of the burst it ended)."""
    reason: Reason | str                 # a guards.Reason, or "duplicate"
    replies: list[str] = field(default_factory=list)
    sent_ids: list[int] = field(default_factory=list)
    outcome: str = ""                    # what was stored: "replied", "pending", "no_key", "failed", a reason

    @property
    def replied(self) -> bool:
        return bool(self.sent_ids)


DUPLICATE = "duplicate"
NO_KEY = "no_key"
FAILED = "failed"
EMPTY = "empty_answer"

Blocking = Callable[..., Awaitable]
Sleep = Callable[[float], Awaitable]


def process_claimer(bot: str) -> str:
    """Who claims: unique per process run, readable in the database."""
    return f"{bot}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:128]


@dataclass(frozen=True)
class Recovered:
    answered_before: int = 0     # messages whose reply the chat's history showed
    taken_up: int = 0            # messages given back to be answered now
    commands: int = 0            # interrupted commands (settled, never run again)


class AutoReplier:
    """The auto-reply logic of one bot."""

    def __init__(self, config: Config, client: TrackedClient, *, store: Store | None = None,
                 run_blocking: Blocking | None = None, clock: Callable[[], dt.datetime] = utcnow,
                 sleep: Sleep = asyncio.sleep, claimer: str | None = None):
        self.config = config
        self.client = client
        self.store = store or Store(config.bot.name)
        self.claimer = claimer or process_claimer(config.bot.name)
        self._blocking = run_blocking or asyncio.to_thread
        self._clock = clock
        self._sleep = sleep
        # Per chat, only while it matters (a bot meets new chats for weeks): the lock while
        # someone holds or waits for it, the wake-up time while the chat has messages waiting.
        self._chat_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}
        self._wake: dict[int, dt.datetime] = {}
        self._switches: tuple[float, Switches] | None = None

    def policy_now(self) -> Policy:
        """The settings in force (blocking: reads the owner's switches, at most once a second;
        the owner's commands call `look_again`, which reads them afresh)."""
        now = time.monotonic()
        if self._switches is None or now - self._switches[0] > SWITCHES_KEPT_SECONDS:
            self._switches = (now, self.store.switches())
        switches = self._switches[1]
        return Policy.from_config(self.config.autoreply, enabled=switches.enabled,
                                  cooldown_seconds=switches.cooldown_seconds, paused_until=switches.paused_until)

    async def policy(self) -> Policy:
        return await self._blocking(self.policy_now)

    @contextlib.asynccontextmanager
    async def _lock(self, chat_id: int):
        """Hold the chat's lock; it is forgotten once nobody holds or waits for it."""
        lock, users = self._chat_locks.setdefault(chat_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._chat_locks[chat_id]

    def chats_in_memory(self) -> int:
        """How many chats this replier keeps something about in memory (locks, wake-up times)."""
        return len(self._chat_locks.keys() | self._wake.keys())

    # --- arrival ----------------------------------------------------------------------------

    async def handle(self, msg: IncomingMessage, transport: Transport) -> Handled:
        """Record `msg` once (ever), then answer its chat if the moment has come."""
        screened = guards.screen(msg)
        if screened is not None:
            return Handled(screened, outcome=str(screened))
        async with self._lock(msg.chat_id):
            new_chat = await self._chat_age(msg, transport)
            now = self._clock()
            reason = await self._blocking(self._receive, msg, now, new_chat)
            if reason is None:
                log.debug("chat %s message %s was received before", msg.chat_id, msg.message_id)
                return Handled(DUPLICATE)
            if reason is not Reason.REPLY:
                log.info("no auto-reply in chat %s (message %s): %s", msg.chat_id, msg.message_id, reason)
                if reason is Reason.LOOP_DETECTED:
                    log.warning("chat %s answers our replies like a machine; auto-replies paused there",
                                msg.chat_id)
                return Handled(reason, outcome=str(reason))
            quiet = self.config.autoreply.reply_after_quiet_seconds
            if quiet > 0:
                # The contact may go on typing: `run_due` looks at the chat once they paused.
                self._wake[msg.chat_id] = now + dt.timedelta(seconds=quiet)
                return Handled(Reason.QUIET, outcome=PENDING)
            return await self._process(msg.chat_id, transport)

    async def _chat_age(self, msg: IncomingMessage, transport: Transport) -> bool | None:
        """Whether the chat is new, asked of Telegram once per chat and only when recipients care."""
        if not Policy.from_config(self.config.autoreply).recipients.needs_chat_age:
            return None
        view = await self._blocking(self.store.chat_view, msg.chat_id)
        if view.new_chat is not None:
            return None
        try:
            return await transport.is_new_chat(msg.chat_id, msg.message_id)
        except Exception as exc:
            log.warning("cannot tell whether chat %s is new (%s)", msg.chat_id, exc)
            return None

    def _receive(self, msg: IncomingMessage, now: dt.datetime, new_chat: bool | None) -> Reason | None:
        """Record the message (None: a duplicate) and return REPLY (it waits for its answer)
        or the reason it never gets one."""
        policy = self.policy_now()
        kind, text = kind_and_text(msg, policy)
        if not self.store.record(msg.chat_id, msg.message_id, text, msg.date, now, kind=kind):
            return None
        self.store.note_chat(msg.chat_id, msg.sender_name, msg.username)
        if new_chat is not None:
            self.store.set_new_chat(msg.chat_id, new_chat)
        view = self.store.chat_view(msg.chat_id)
        reason = guards.admit(msg, policy, view)
        if reason is None:
            loop = guards.observe(msg, policy, view, now)
            self.store.save_loop_state(msg.chat_id, loop.fast_exchanges, loop.paused_until, now)
            if kind in (MESSAGE, PHOTO):
                self._remember(msg.chat_id, msg.message_id, CONTACT, text, msg.date)
            if loop.detected:
                reason = Reason.LOOP_DETECTED
        if reason is not None:
            self.store.settle(msg.chat_id, msg.message_id, str(reason))
            return reason
        return Reason.REPLY

    async def note_owner_message(self, chat_id: int, message_id: int, text: str, at: dt.datetime) -> int:
        """The owner wrote in a chat themselves (from another session): keep it as context,
        take the chat's waiting messages as theirs, and keep hands off for `owner_pause_minutes`.
        Returns how many waiting messages the owner took over."""
        now = self._clock()
        pause = dt.timedelta(minutes=self.config.autoreply.owner_pause_minutes)

        def save() -> int:
            if text.strip():
                self._remember(chat_id, message_id, OWNER, text, at)
            if pause:
                self.store.pause_chat(chat_id, now + pause)
            return self.store.settle_owner_answered(chat_id, at, now)

        # No chat lock here: while an answer is being written (the lock held), the owner's
        # pause must land at once, so the answer is dropped before it is sent.
        taken = await self._blocking(save)
        self._wake.pop(chat_id, None)
        if taken:
            log.info("the owner answered chat %s; %d waiting message(s) left to them", chat_id, taken)
        return taken

    def look_again(self) -> None:
        """Forget when waiting chats were due: the owner changed something (`.resume`, `.autoreply on`)."""
        self._wake.clear()
        self._switches = None

    # --- answering --------------------------------------------------------------------------

    async def run_due(self, transport: Transport) -> int:
        """Answer every chat whose waiting messages may be answered now; returns replies sent."""
        now = self._clock()
        waiting = await self._blocking(self.store.chats_with_pending)
        self._forget_settled(waiting, now)
        due = [chat_id for chat_id in waiting if (wake := self._wake.get(chat_id)) is None or wake <= now]
        limit = asyncio.Semaphore(CHATS_AT_ONCE)

        async def answer(chat_id: int) -> bool:
            async with limit, self._lock(chat_id):
                return bool((await self._process(chat_id, transport)).sent_ids)

        return sum(await asyncio.gather(*(answer(chat_id) for chat_id in due)))

    def _forget_settled(self, waiting: list[int], now: dt.datetime) -> None:
        """Drop the wake-up times that passed for chats with nothing waiting any more (their
        messages were settled meanwhile: by the owner, a restart ...)."""
        past = [chat_id for chat_id, wake in self._wake.items() if wake <= now]
        if past:
            still = set(waiting)
            for chat_id in past:
                if chat_id not in still:
                    del self._wake[chat_id]

    async def _process(self, chat_id: int, transport: Transport) -> Handled:
        """Settle, answer or leave waiting the chat's pending messages (the chat's lock is held)."""
        now = self._clock()
        pending, view, policy, load = await self._blocking(self._plan_inputs, chat_id, now)
        plan = guards.plan(pending, policy, view, now, load)
        if plan.skip:
            await self._blocking(self._settle_skipped, plan.skip, now)
        if not plan.answer:
            if plan.wait_until is None:
                self._wake.pop(chat_id, None)       # looked at again at the next `run_due`
            else:
                self._wake[chat_id] = plan.wait_until
            if plan.waiting is not None:
                waiting = [p.row_id for p in pending if p not in {s for s, _ in plan.skip}]
                await self._blocking(self.store.note_waiting, waiting,
                                     guards.describe_wait(plan.waiting, view, load, now))
                log.debug("chat %s: %d message(s) wait (%s) until %s", chat_id, len(waiting), plan.waiting,
                          plan.wait_until or "the next look")
                return Handled(plan.waiting, outcome=PENDING)
            last = plan.skip[-1][1] if plan.skip else Reason.NO_TEXT
            return Handled(last, outcome=str(last))
        self._wake.pop(chat_id, None)
        burst = list(plan.answer)
        if not await self._blocking(self.store.claim_rows, [p.row_id for p in burst], self.claimer, now):
            return Handled(DUPLICATE)
        kill_point(AFTER_CLAIM)
        return await self._answer(chat_id, burst, view, transport, now)

    def _plan_inputs(self, chat_id: int, now: dt.datetime) -> tuple[list[Pending], ChatView, Policy, Load]:
        policy = self.policy_now()
        view = self.store.chat_view(chat_id)
        load = Load(
            chat_replies_last_hour=(self.store.replies_since(now - dt.timedelta(hours=1), chat_id)
                                    if policy.chat_hourly_cap else 0),
            replies_last_minute=(self.store.replies_since(now - dt.timedelta(minutes=1))
                                 if policy.global_minute_cap else 0),
            owner_away=(guards.owner_away(*self.store.owner_presence(), policy, now)
                        if policy.only_when_away else True),
            chat_tokens_today=(self.store.tokens_on(chat_id, now.date())
                               if view.daily_token_cap is not None else 0))
        return self.store.pending(chat_id), view, policy, load

    def _settle_skipped(self, skipped, now: dt.datetime) -> None:
        for pending, reason in skipped:
            detail = f"after waiting: {pending.waited}" if reason is Reason.TOO_OLD and pending.waited else ""
            self.store.settle_rows([pending.row_id], str(reason), now, detail=detail)
            log.info("no auto-reply in chat message %s: %s", pending.message_id, reason)

    async def _answer(self, chat_id: int, burst: list[Pending], view: ChatView, transport: Transport,
                      claimed_at: dt.datetime) -> Handled:
        settings = self.config.autoreply
        ids = [p.row_id for p in burst]
        if settings.human_pacing and settings.read_delay_seconds:
            await self._sleep(settings.read_delay_seconds)
        try:
            async with transport.typing(chat_id):
                started = self._clock()
                answer = await self._generate(chat_id, burst, view, transport)
                await self._type_for(answer, self._clock() - started)
        except NoKeyAvailable as exc:
            return await self._no_key(chat_id, ids, exc, transport)
        except BookingPaused:
            # Calls cannot be booked anywhere (logged once by the accountant): the messages wait
            # and are answered once booking works again.
            with contextlib.suppress(DatabaseUnavailable):
                await self._blocking(self.store.release, ids)
            return Handled(Reason.REPLY, outcome=PENDING)
        except ClientError as exc:
            log.warning("no auto-reply in chat %s: %s", chat_id, exc)
            await self._blocking(self.store.settle_rows, ids, FAILED, self._clock(), detail=str(exc))
            return Handled(Reason.REPLY, outcome=FAILED)
        except DatabaseUnavailable as exc:
            # The call could not be booked even after retries: no reply, and the claim stays,
            # so the message is never answered twice. The owner sees the outage in the logs.
            log.warning("no auto-reply in chat %s: %s", chat_id, exc)
            return Handled(Reason.REPLY, outcome=FAILED)
        pieces = split_message(answer)
        if not pieces:
            await self._blocking(self.store.settle_rows, ids, EMPTY, self._clock())
            return Handled(Reason.REPLY, outcome=EMPTY)
        if await self._owner_stepped_in(chat_id, claimed_at):
            await self._blocking(self.store.settle_rows, ids, OWNER_REPLIED, self._clock(),
                                 detail="the owner wrote while the answer was being written")
            log.info("chat %s: the owner stepped in; the prepared answer is dropped", chat_id)
            return Handled(Reason.OWNER_PAUSED, outcome=OWNER_REPLIED)
        sent = await self._send(chat_id, ids, pieces, transport)
        if sent and settings.mark_read:
            try:
                await transport.mark_read(chat_id, max(p.message_id for p in burst))
            except Exception as exc:
                log.warning("could not mark chat %s read (%s)", chat_id, exc)
        return Handled(Reason.REPLY, pieces, sent, outcome=REPLIED)

    async def _type_for(self, answer: str, spent: dt.timedelta) -> None:
        """Human pacing: "typing…" lasts as long as typing the answer would (capped)."""
        settings = self.config.autoreply
        if not settings.human_pacing:
            return
        typing = min(len(answer) / settings.typing_chars_per_second, settings.max_typing_seconds)
        left = typing - spent.total_seconds()
        if left > 0:
            await self._sleep(left)

    async def _owner_stepped_in(self, chat_id: int, claimed_at: dt.datetime) -> bool:
        view = await self._blocking(self.store.chat_view, chat_id)
        pause = dt.timedelta(minutes=self.config.autoreply.owner_pause_minutes)
        until = view.owner_paused_until
        return until is not None and pause > dt.timedelta(0) and until - pause >= claimed_at

    async def _generate(self, chat_id: int, burst: list[Pending], view: ChatView, transport: Transport) -> str:
        """The answer to the burst: the model's, or `media_text` when there is nothing it could read."""
        settings = self.config.autoreply
        images = await self._photos(chat_id, burst, transport)
        if all(p.media or (p.photo and p.message_id not in images and not caption_of(p.text)) for p in burst):
            return settings.media_text
        lines = await self._blocking(self.store.context, chat_id, settings.context_messages)
        prompt = build_prompt(view.persona or settings.system_prompt, lines, burst, images, settings.image_detail)
        vision = bool(images) and bool(settings.vision_model)
        result = await self.client.chat(prompt, operation=OPERATION,
                                        model=settings.vision_model if vision else settings.model or None,
                                        models=None if vision else settings.models or None, chat_id=chat_id,
                                        max_tokens=settings.max_output_tokens)
        return result.text

    async def _photos(self, chat_id: int, burst: list[Pending], transport: Transport) -> dict[int, bytes]:
        """The pictures of the burst's newest photos, by message id (those that could be had)."""
        images: dict[int, bytes] = {}
        for p in [p for p in burst if p.photo][-MAX_IMAGES_PER_REPLY:]:
            try:
                data = await transport.download_photo(chat_id, p.message_id, self.config.autoreply.max_image_bytes)
            except Exception as exc:
                log.warning("cannot fetch the photo of message %s in chat %s (%s); its caption is used", p.message_id,
                            chat_id, exc)
                continue
            if data is None:
                log.info("the photo of message %s in chat %s is gone or over max_image_bytes; its caption is used",
                         p.message_id, chat_id)
            else:
                images[p.message_id] = data
        return images

    async def _send(self, chat_id: int, ids: list[int], pieces: list[str], transport: Transport,
                    outcome: str = REPLIED) -> list[int]:
        sent: list[int] = []
        try:
            for piece in pieces:
                sent.append(await transport.send_text(chat_id, piece))
                kill_point(AFTER_SEND)
        finally:
            # Whatever went out counts: the cooldown starts and the context knows it.
            at = self._clock()

            def save():
                if sent:
                    self.store.note_reply(chat_id, at)
                    for message_id, piece in zip(sent, pieces):
                        self._remember(chat_id, message_id, AUTO, piece, at)
                    if outcome == REPLIED:
                        self.store.settle_answered(ids, sent[0], at)
                    else:
                        self.store.settle_rows(ids, outcome, at, reply_id=sent[0])
                else:
                    self.store.settle_rows(ids, FAILED, at, detail="sending failed")

            await self._blocking(save)
        return sent

    async def _no_key(self, chat_id: int, ids: list[int], exc: NoKeyAvailable, transport: Transport) -> Handled:
        now = self._clock()
        text = no_key_alert_text(self.config.bot.name, exc.frees_up_at, now)
        dedupe = f"no_key:{self.config.bot.name}:{(exc.frees_up_at or now).strftime('%Y-%m-%dT%H')}"
        if isinstance(exc, BudgetExceeded):     # one alert per budget and period, whichever bot
            text, dedupe = f"💸 Auto-replies stopped: {exc}.", exc.dedupe_key
        await self._blocking(enqueue_alert, "no_key", dedupe, text)
        log.warning("no key can pay for an auto-reply in chat %s: %s", chat_id, exc)
        fallback = self.config.autoreply.fallback_text.strip()
        if not fallback:
            await self._blocking(self.store.settle_rows, ids, NO_KEY, now)
            return Handled(Reason.REPLY, outcome=NO_KEY)
        pieces = split_message(fallback)
        sent = await self._send(chat_id, ids, pieces, transport, outcome=NO_KEY)
        return Handled(Reason.REPLY, pieces, sent, outcome=NO_KEY)

    def _remember(self, chat_id: int, message_id: int, role: str, text: str, at: dt.datetime) -> None:
        self.store.remember(chat_id, message_id, role, text, at)
        self.store.trim(chat_id, self.config.autoreply.context_messages + KEEP_EXTRA)

    # --- after a crash ----------------------------------------------------------------------

    async def recover(self, transport: Transport) -> Recovered:
        """Settle the claims a dead process of this bot left: the chat's history says whether
        our account wrote after the message (answered: settled, never sent again) or not
        (given back, answered now). Interrupted commands are settled, not run again."""
        stale = await self._blocking(self.store.stale_claims, self.claimer)
        answered = taken = commands = 0
        for chat_id, rows in stale.items():
            async with self._lock(chat_id):
                now = self._clock()
                command_ids = [row_id for row_id, _, kind in rows if kind == COMMAND]
                message_rows = [(row_id, message_id) for row_id, message_id, kind in rows if kind != COMMAND]
                if command_ids:
                    await self._blocking(self.store.settle_rows, command_ids, FAILED, now,
                                         detail="interrupted by a restart; not run again")
                    commands += len(command_ids)
                if not message_rows:
                    continue
                ids = [row_id for row_id, _ in message_rows]
                newest = max(message_id for _, message_id in message_rows)
                try:
                    reply_id = await transport.replied_after(chat_id, newest)
                except Exception as exc:
                    log.warning("cannot read chat %s to settle an interrupted reply (%s); it stays claimed",
                                chat_id, exc)
                    continue
                if reply_id is not None:
                    await self._blocking(self.store.settle_answered, ids, reply_id, now,
                                         "answered before a restart (seen in the chat)")
                    answered += len(ids)
                    log.info("chat %s: %d interrupted message(s) were answered before the restart", chat_id,
                             len(ids))
                else:
                    await self._blocking(self.store.release, ids)
                    taken += len(ids)
                    log.info("chat %s: %d interrupted message(s) are answered again", chat_id, len(ids))
        if taken:
            await self.run_due(transport)
        return Recovered(answered, taken, commands)


def no_key_alert_text(bot: str, frees_up_at: dt.datetime | None, now: dt.datetime) -> str:
    if frees_up_at is None:
        when = "No key will free up by itself: check the keys with 'tokenpool keys'."
    else:
        when = (f"The first key frees up at {frees_up_at:%H:%M} UTC "
                f"(in {format_duration(max(frees_up_at - now, dt.timedelta(0)))}).")
    return f"⚠️ No API key can pay for auto-replies (bot {bot}); messages go unanswered. {when}"


@contextlib.asynccontextmanager
async def no_typing(_chat_id: int):
    """A `Transport.typing` for transports that have no such thing."""
    yield
