"""Auto-replies: decide, build the context, ask the tracked client, send, remember.

`AutoReplier.handle` takes an `IncomingMessage` (plain values) and a `Transport` (how to
send a text and show "typing…"); the Telegram layer and the offline demo each bring
their own transport and share everything here.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from shared.ai.client import ClientError, NoKeyAvailable, TrackedClient
from shared.core.config import Config
from shared.core.db import DatabaseUnavailable
from shared.core.models import utcnow
from shared.core.outbox import enqueue_alert
from shared.core.windows import format_duration
from userbot import guards
from userbot.chunks import split_message
from userbot.guards import Decision, Policy, Reason
from userbot.incoming import IncomingMessage
from userbot.state import AUTO, CONTACT, MODEL_ROLES, OWNER, REPLIED, ContextLine, Store

log = logging.getLogger("tokenpool.autoreply")

OPERATION = "autoreply"
# Chat messages kept per chat beyond the context window (room for the owner's context).
KEEP_EXTRA = 8


class Transport(Protocol):
    """How replies leave: Telegram in the bot, something else in the demo."""

    async def send_text(self, chat_id: int, text: str) -> int:
        """Send `text` (at most 4096 characters) to the chat; return the new message's id."""

    def typing(self, chat_id: int) -> AbstractAsyncContextManager:
        """Show "typing…" in the chat while the block runs."""


@dataclass
class Handled:
    """What became of one incoming message."""
    reason: Reason | str                 # a guards.Reason, or "duplicate"
    replies: list[str] = field(default_factory=list)
    sent_ids: list[int] = field(default_factory=list)
    outcome: str = ""                    # what was stored: "replied", "no_key", "failed", a reason

    @property
    def replied(self) -> bool:
        return bool(self.sent_ids)


DUPLICATE = "duplicate"
NO_KEY = "no_key"
FAILED = "failed"
EMPTY = "empty_answer"

Blocking = Callable[..., Awaitable]


class AutoReplier:
    """The auto-reply logic of one bot."""

    def __init__(self, config: Config, client: TrackedClient, *, store: Store | None = None,
                 run_blocking: Blocking | None = None, clock: Callable[[], dt.datetime] = utcnow):
        self.config = config
        self.client = client
        self.store = store or Store(config.bot.name)
        self._blocking = run_blocking or asyncio.to_thread
        self._clock = clock
        self._chat_locks: dict[int, asyncio.Lock] = {}

    async def policy(self) -> Policy:
        switches = await self._blocking(self.store.switches)
        return Policy.from_config(self.config.autoreply, enabled=switches.enabled,
                                  cooldown_seconds=switches.cooldown_seconds)

    async def handle(self, msg: IncomingMessage, transport: Transport) -> Handled:
        """Decide about `msg` once (ever) and reply when the guards allow it."""
        screened = guards.screen(msg)
        if screened is not None:
            return Handled(screened, outcome=str(screened))
        # One message of a chat at a time: a burst must see the cooldown the first reply sets.
        async with self._chat_locks.setdefault(msg.chat_id, asyncio.Lock()):
            return await self._handle(msg, transport)

    async def note_owner_message(self, chat_id: int, message_id: int, text: str, at: dt.datetime) -> None:
        """The owner wrote in a chat themselves (from another session): keep it as context."""
        if text.strip():
            await self._blocking(self._remember, chat_id, message_id, OWNER, text, at)

    # --- steps ------------------------------------------------------------------------------

    async def _handle(self, msg: IncomingMessage, transport: Transport) -> Handled:
        now = self._clock()
        if not await self._blocking(self.store.claim, msg.chat_id, msg.message_id, now):
            log.debug("chat %s message %s was handled before", msg.chat_id, msg.message_id)
            return Handled(DUPLICATE)
        decision = await self._decide(msg, now)
        if not decision.reply:
            log.info("no auto-reply in chat %s (message %s): %s", msg.chat_id, msg.message_id, decision.reason)
            return Handled(decision.reason, outcome=str(decision.reason))
        try:
            async with transport.typing(msg.chat_id):
                answer = await self._generate(msg)
        except NoKeyAvailable as exc:
            return await self._no_key(msg, exc, transport)
        except ClientError as exc:
            log.warning("no auto-reply in chat %s: %s", msg.chat_id, exc)
            await self._blocking(self.store.settle, msg.chat_id, msg.message_id, FAILED)
            return Handled(Reason.REPLY, outcome=FAILED)
        except DatabaseUnavailable as exc:
            # The call could not be booked even after retries: no reply, and the claim stays,
            # so the message is never answered twice. The owner sees the outage in the logs.
            log.warning("no auto-reply in chat %s: %s", msg.chat_id, exc)
            return Handled(Reason.REPLY, outcome=FAILED)
        pieces = split_message(answer)
        if not pieces:
            await self._blocking(self.store.settle, msg.chat_id, msg.message_id, EMPTY)
            return Handled(Reason.REPLY, outcome=EMPTY)
        sent = await self._send(msg, pieces, transport)
        return Handled(Reason.REPLY, pieces, sent, outcome=REPLIED)

    async def _decide(self, msg: IncomingMessage, now: dt.datetime) -> Decision:
        policy = await self.policy()
        view = await self._blocking(self.store.chat_view, msg.chat_id)
        decision = guards.decide(msg, policy, view, now)

        def save():
            self.store.save_decision(msg.chat_id, decision, now)
            if decision.keep_context:
                self._remember(msg.chat_id, msg.message_id, CONTACT, msg.text, msg.date)
            if not decision.reply:
                self.store.settle(msg.chat_id, msg.message_id, str(decision.reason))

        await self._blocking(save)
        if decision.reason is Reason.LOOP_DETECTED:
            log.warning("chat %s answers our replies like a machine; auto-replies paused there until %s",
                        msg.chat_id, decision.paused_until)
        return decision

    async def _generate(self, msg: IncomingMessage) -> str:
        settings = self.config.autoreply
        lines = await self._blocking(self.store.context, msg.chat_id, settings.context_messages)
        result = await self.client.chat(build_prompt(settings.system_prompt, lines, msg),
                                        operation=OPERATION, model=settings.model or None,
                                        models=settings.models or None, chat_id=msg.chat_id,
                                        max_tokens=settings.max_output_tokens)
        return result.text

    async def _send(self, msg: IncomingMessage, pieces: list[str], transport: Transport,
                    outcome: str = REPLIED) -> list[int]:
        sent = []
        try:
            for piece in pieces:
                sent.append(await transport.send_text(msg.chat_id, piece))
        finally:
            # Whatever went out counts: the cooldown starts and the context knows it.
            at = self._clock()

            def save():
                if sent:
                    self.store.note_reply(msg.chat_id, at)
                    for message_id, piece in zip(sent, pieces):
                        self._remember(msg.chat_id, message_id, AUTO, piece, at)
                self.store.settle(msg.chat_id, msg.message_id, outcome if sent else FAILED)

            await self._blocking(save)
        return sent

    async def _no_key(self, msg: IncomingMessage, exc: NoKeyAvailable, transport: Transport) -> Handled:
        now = self._clock()
        text = no_key_alert_text(self.config.bot.name, exc.frees_up_at, now)
        dedupe = f"no_key:{self.config.bot.name}:{(exc.frees_up_at or now).strftime('%Y-%m-%dT%H')}"
        await self._blocking(enqueue_alert, "no_key", dedupe, text)
        log.warning("no key can pay for an auto-reply in chat %s: %s", msg.chat_id, exc)
        fallback = self.config.autoreply.fallback_text.strip()
        if not fallback:
            await self._blocking(self.store.settle, msg.chat_id, msg.message_id, NO_KEY)
            return Handled(Reason.REPLY, outcome=NO_KEY)
        pieces = split_message(fallback)
        sent = await self._send(msg, pieces, transport, outcome=NO_KEY)
        return Handled(Reason.REPLY, pieces, sent, outcome=NO_KEY)

    def _remember(self, chat_id: int, message_id: int, role: str, text: str, at: dt.datetime) -> None:
        self.store.remember(chat_id, message_id, role, text, at)
        self.store.trim(chat_id, self.config.autoreply.context_messages + KEEP_EXTRA)


def build_prompt(system_prompt: str, lines: list[ContextLine], msg: IncomingMessage) -> list[dict]:
    """The chat-completions messages: the system prompt, then the chat's recent messages.

    The incoming message ends the list even if the context store did not keep it."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    messages += [{"role": MODEL_ROLES[line.role], "content": line.text} for line in lines]
    if not lines or lines[-1].role != CONTACT or lines[-1].text != msg.text:
        messages.append({"role": "user", "content": msg.text})
    return messages


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
