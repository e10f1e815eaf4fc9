"""The Telegram layer: Pyrogram handlers that parse, call the core, and send.

- Incoming private messages go to `AutoReplier.handle`.
- The owner's own messages (from their other sessions; `filters.me`): in Saved Messages
  (chat id == the account's id) they are commands; in a private chat they are the
  owner's side of the conversation (context), or one of the commands about that chat.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import logging
import time

from pyrogram import Client, enums, filters, raw
from pyrogram.errors import FloodWait, MessageDeleteForbidden, MessageIdInvalid, MessageNotModified, RPCError
from pyrogram.handlers import MessageHandler, UserStatusHandler
from pyrogram.types import Message

from shared.core.backoff import Backoff
from shared.core.config import Config
from shared.core.db import BOT_CACHE_KIB
from shared.core.liveness import beat, sign_off
from shared.core.models import utcnow
from shared.core.plain_text import storable
from shared.core.startup import open_runtime
from shared.core.systemd import Notifier
from userbot import guards
from userbot.accounts import check_sessions
from userbot.alert_delivery import claimer_name, deliver_forever
from userbot.autoreply import DUPLICATE, AutoReplier
from userbot.chunks import TELEGRAM_LIMIT, split_message, utf16_length
from userbot.commands import (
    Attachment,
    CommandContext,
    Registry,
    Reply,
    Target,
    is_command,
    run_command,
)
from userbot.core import BotCore, build_cores, close_cores
from userbot.digest import away_digest
from userbot.incoming import IncomingMessage
from userbot.retry import NETWORK_ERRORS, telegram_call
from userbot.session import (
    TelegramCredentials,
    make_client,
    require_session,
    secure_session,
)
from userbot.state import COMMAND_DONE, Store

log = logging.getLogger("tokenpool.bot")

TYPING_EVERY = 4.0          # Telegram shows "typing…" for about 5 s per action
MUTE_CACHE_SECONDS = 300
MUTE_CACHE_CHATS = 1000     # chats whose mute state is remembered (the longest known are forgotten first)
MAX_TEXT_PIECES = 3         # longer command answers are sent as a file
HEARTBEAT_SECONDS = 15.0
PRUNE_EVERY_SECONDS = 3600.0
HANDLED_KEPT = dt.timedelta(days=30)    # "answered already" is remembered this long at least
OWN_SEND_ONLINE_SECONDS = 300.0         # Telegram shows an account online ~5 min after it sends
TICK_SECONDS = 1.0                      # how often waiting messages are looked at again
HISTORY_LOOKBACK = 50
# Telegram answers that mean "nothing to do": an edit that changes nothing (the same update
# delivered twice), a message already deleted. Logged quietly, never as a traceback.
HARMLESS = (MessageNotModified, MessageIdInvalid, MessageDeleteForbidden)


def to_utc(moment: dt.datetime | None) -> dt.datetime:
    """Pyrogram's message dates (naive local time, or aware) as naive UTC."""
    if moment is None:
        return utcnow()
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


MEDIA_KINDS = ("photo", "voice", "video_note", "video", "audio", "sticker", "animation", "document",
               "contact", "location", "venue", "poll", "dice")


def media_kind(message: Message) -> str:
    """What kind of media the message carries ("" for none)."""
    for kind in MEDIA_KINDS:
        if getattr(message, kind, None):
            return kind.replace("_", " ")
    return ""


def incoming_from(message: Message, *, is_muted: bool = False) -> IncomingMessage:
    """The plain values of a Pyrogram message."""
    user = message.from_user
    chat = message.chat
    return IncomingMessage(
        chat_id=(chat.id or 0) if chat else 0,
        message_id=message.id,
        sender_id=user.id if user else None,
        date=to_utc(message.date),
        text=storable(message.text or message.caption or ""),
        is_private=bool(chat and chat.type == enums.ChatType.PRIVATE),
        is_bot=bool(user and user.is_bot) or bool(chat and chat.type == enums.ChatType.BOT),
        is_self=bool(message.outgoing or (user and user.is_self)),
        is_contact=bool(user and user.is_contact),
        is_service=bool(message.service),
        is_muted=is_muted,
        sender_name=storable(_display_name(chat or user)),
        username=storable(getattr(chat, "username", None) or (user.username if user else None) or ""),
        media=media_kind(message),
    )


def _display_name(peer) -> str:
    if peer is None:
        return ""
    return " ".join(part for part in (getattr(peer, "first_name", None), getattr(peer, "last_name", None))
                    if part)[:100]


def is_forwarded(message: Message) -> bool:
    return bool(getattr(message, "forward_origin", None) or getattr(message, "forward_date", None))


class TelegramTransport:
    """`autoreply.Transport` over a Pyrogram client."""

    def __init__(self, client: Client, max_flood_wait: float = 300.0, on_sent=None):
        self.client = client
        self.max_flood_wait = max_flood_wait
        self.on_sent = on_sent

    async def send_text(self, chat_id: int, text: str) -> int:
        sent = await telegram_call(self.client.send_message, chat_id, text, parse_mode=enums.ParseMode.DISABLED,
                                   what=f"reply in chat {chat_id}", max_flood_wait=self.max_flood_wait)
        if self.on_sent is not None:
            self.on_sent()
        return sent.id

    async def mark_read(self, chat_id: int, max_id: int) -> None:
        await telegram_call(self.client.read_chat_history, chat_id, max_id, what=f"marking chat {chat_id} read",
                            max_flood_wait=self.max_flood_wait)

    async def replied_after(self, chat_id: int, message_id: int) -> int | None:
        """Telegram is the truth: the account's first message in the chat after `message_id`."""
        found = None
        async for message in self.client.get_chat_history(chat_id, limit=HISTORY_LOOKBACK):   # newest first
            if message.id <= message_id:
                break
            if message.outgoing:
                found = message.id
        return found

    async def is_new_chat(self, chat_id: int, message_id: int) -> bool | None:
        async for message in self.client.get_chat_history(chat_id, limit=HISTORY_LOOKBACK):
            if message.id < message_id:
                return False
        return True

    async def download_photo(self, chat_id: int, message_id: int, max_bytes: int) -> bytes | None:
        """The message is fetched afresh: a file reference kept from its arrival may have expired."""
        message = await telegram_call(self.client.get_messages, chat_id, message_id,
                                      what=f"reading message {message_id} of chat {chat_id}",
                                      max_flood_wait=self.max_flood_wait)
        photo = getattr(message, "photo", None)
        if photo is None or (photo.file_size or 0) > max_bytes:
            return None
        data = await telegram_call(self.client.download_media, message, in_memory=True,
                                   what=f"downloading a photo of chat {chat_id}", max_flood_wait=self.max_flood_wait)
        if data is None:
            return None
        content = data.getvalue()
        return content if len(content) <= max_bytes else None

    @contextlib.asynccontextmanager
    async def typing(self, chat_id: int):
        async def keep_typing():
            while True:
                try:
                    await self.client.send_chat_action(chat_id, enums.ChatAction.TYPING)
                except FloodWait as exc:    # "typing…" is not worth a FloodWait: wait it out, quietly
                    log.info("FloodWait of %s s on 'typing…' in chat %s; waiting", exc.value, chat_id)
                    await asyncio.sleep(float(exc.value or 1))
                    continue
                await asyncio.sleep(TYPING_EVERY)

        task = asyncio.create_task(keep_typing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RPCError, OSError):
                await task
            with contextlib.suppress(RPCError, OSError):
                await self.client.send_chat_action(chat_id, enums.ChatAction.CANCEL)


class BotApp:
    """The handlers of one bot, over the core objects it is given."""

    def __init__(self, config: Config, replier: AutoReplier, registry: Registry, *,
                 run_blocking=None, clock=utcnow):
        self.config = config
        self.replier = replier
        self.registry = registry
        self.store: Store = replier.store
        self.run_blocking = run_blocking or asyncio.to_thread
        self.clock = clock
        self._muted: dict[int, tuple[float, bool]] = {}
        self._last_sent = float("-inf")        # when this bot last sent a reply (monotonic)

    def handlers(self) -> list[MessageHandler]:
        """In dispatch order; the filters keep the owner's messages and others' apart."""
        return [
            MessageHandler(self.on_own_message, filters.me & ~filters.service),
            MessageHandler(self.on_incoming, filters.private & filters.incoming & ~filters.me),
        ]

    def status_handlers(self) -> list[UserStatusHandler]:
        """The account's own presence, when Telegram reports it (see docs/design.md, "only_when_away")."""
        return [UserStatusHandler(self.on_user_status)]

    def transport(self, client: Client) -> TelegramTransport:
        return TelegramTransport(client, self.config.bot.max_flood_wait_seconds, on_sent=self._note_sent)

    def _note_sent(self) -> None:
        self._last_sent = time.monotonic()

    # --- handlers ---------------------------------------------------------------------------

    async def on_incoming(self, client: Client, message: Message):
        incoming = incoming_from(message)
        if guards.screen(incoming) is None and self.config.autoreply.skip_muted:
            incoming = dataclasses.replace(incoming, is_muted=await self.is_muted(client, incoming.chat_id))
        return await self.replier.handle(incoming, self.transport(client))

    async def on_own_message(self, client: Client, message: Message) -> None:
        if is_forwarded(message) or message.chat is None or message.chat.id is None:
            return
        text = message.text or message.caption or ""
        me = client.me
        in_saved = me is not None and message.chat.id == me.id
        in_chat = (not in_saved and message.chat.type == enums.ChatType.PRIVATE
                   and message.chat.id != guards.TELEGRAM_SERVICE_ID)
        if not (in_saved or in_chat):
            return
        command = bool(text) and is_command(self.registry, text, self.config.bot.command_prefix, inside_chat=in_chat)
        await self.owner_returns(client, skip_digest=command)
        if not command:
            if in_chat:
                await self.replier.note_owner_message(message.chat.id, message.id, text, to_utc(message.date))
            return
        # The same update can arrive twice: a command is claimed like a message, and runs once.
        if not await self.run_blocking(self.store.claim_command, message.chat.id, message.id, text,
                                       self.clock(), self.replier.claimer):
            log.info("command message %s was delivered again; it ran once already", message.id)
            return
        if in_saved:
            reply = await run_command(self.registry, text, self._context(), resolve=self._resolver(client),
                                      run_blocking=self.run_blocking)
        else:
            label = _chat_label(message.chat)
            reply = await run_command(self.registry, text,
                                      self._context(chat_id=message.chat.id, chat_label=label),
                                      resolve=self._resolver(client), run_blocking=self.run_blocking)
        try:
            await self.run_blocking(self.store.settle, message.chat.id, message.id, COMMAND_DONE)
            self.replier.look_again()
            if reply is None:
                return
            if in_saved:
                await self.answer_in_place(client, message, reply)
                return
            # A command about this chat: take it out of the conversation, answer in Saved Messages.
            await self._call(client.delete_messages, message.chat.id, message.id, what="deleting a command")
            await self.send_reply(client, "me", reply)
        finally:
            if reply is not None:
                reply.discard_files()       # sent or not, a report's temporary file goes

    async def on_user_status(self, client: Client, user) -> None:
        """Telegram's word on the account's own presence (other users' statuses are ignored)."""
        me = client.me
        if me is None or user is None or user.id != me.id:
            return
        online = getattr(user, "status", None) == enums.UserStatus.ONLINE
        if online and time.monotonic() - self._last_sent < OWN_SEND_ONLINE_SECONDS:
            return      # our own reply put the account online: that is not the owner
        await self.run_blocking(self.store.note_owner_online, online, self.clock())

    async def owner_returns(self, client: Client, *, skip_digest: bool = False) -> None:
        """The owner is active: remember it, and after an away period post the digest of it."""
        now = self.clock()
        previous = await self.run_blocking(self.store.note_owner_active, now)
        settings = self.config.autoreply
        away = dt.timedelta(minutes=settings.away_after_minutes)
        if skip_digest or not settings.digest_on_return or previous is None or now - previous < away:
            return
        digest = await self.run_blocking(away_digest, self.store, self.config, previous, now, True)
        if digest is not None:
            await self.send_reply(client, "me", digest)
            await self.run_blocking(self.store.set_digest_since, now)

    # --- answering commands -----------------------------------------------------------------

    async def answer_in_place(self, client: Client, message: Message, reply: Reply) -> None:
        """Edit the command message into the answer; long answers continue below, or go as a file."""
        pieces, attachment = _layout(reply)
        chat_id = message.chat.id if message.chat else None
        if chat_id is None:
            return                                  # Pyrogram types it optional; an answered command has a chat
        await self._call(client.edit_message_text, chat_id, message.id, pieces[0],
                         parse_mode=_mode(reply), what="answering a command")
        for piece in pieces[1:]:
            await self._call(client.send_message, chat_id, piece, parse_mode=_mode(reply), what="answering a command")
        await self._send_attachment(client, chat_id, reply, attachment)

    async def send_reply(self, client: Client, chat_id, reply: Reply) -> None:
        pieces, attachment = _layout(reply)
        for piece in pieces:
            await self._call(client.send_message, chat_id, piece, parse_mode=_mode(reply), what="sending an answer")
        await self._send_attachment(client, chat_id, reply, attachment)

    async def _send_attachment(self, client: Client, chat_id, reply: Reply, attachment) -> None:
        if reply.photo is not None:
            await self._call(client.send_photo, chat_id, _file(reply.photo),
                             caption=reply.photo.caption, what="sending a picture")
        if attachment is not None:
            await self._call(client.send_document, chat_id, _file(attachment),
                             caption=attachment.caption, file_name=attachment.filename, what="sending a file")

    async def _call(self, fn, *args, what: str, **kwargs):
        try:
            return await telegram_call(fn, *args, what=what, max_flood_wait=self.config.bot.max_flood_wait_seconds,
                                       **kwargs)
        except HARMLESS as exc:
            log.info("%s: Telegram says %s; nothing to do", what, type(exc).__name__)
            return None

    # --- helpers ----------------------------------------------------------------------------

    def _context(self, *, chat_id: int | None = None, chat_label: str = "") -> CommandContext:
        return CommandContext(bot=self.config.bot.name, config=self.config, store=self.store, now=self.clock(),
                              chat_id=chat_id, chat_label=chat_label)

    def _resolver(self, client: Client):
        async def resolve(username: str) -> Target | None:
            try:
                user = await telegram_call(client.get_users, username.lstrip("@"), what=f"looking up {username}")
            except (RPCError, KeyError, ValueError):
                return None
            if isinstance(user, list):
                user = user[0] if user else None
            return Target(user.id, f"@{user.username}" if user.username else username) if user else None
        return resolve

    async def is_muted(self, client: Client, chat_id: int) -> bool:
        """Whether the owner muted the chat's notifications (asked at most every 5 minutes)."""
        cached = self._muted.get(chat_id)
        if cached is not None and time.monotonic() - cached[0] < MUTE_CACHE_SECONDS:
            return cached[1]
        try:
            resolved = await client.resolve_peer(chat_id)
            if resolved is None:
                raise KeyError(chat_id)
            peer = raw.types.InputNotifyPeer(peer=resolved)
            settings = await telegram_call(client.invoke, raw.functions.account.GetNotifySettings(peer=peer),
                                           what=f"notification settings of chat {chat_id}")
            muted = bool(settings.silent) or (settings.mute_until or 0) > time.time()
        except (RPCError, KeyError, ValueError, OSError) as exc:
            log.debug("mute state of chat %s unknown (%s); treating it as not muted", chat_id, exc)
            muted = False
        self._muted.pop(chat_id, None)          # oldest answer first: the first is forgotten past the cap
        self._muted[chat_id] = (time.monotonic(), muted)
        if len(self._muted) > MUTE_CACHE_CHATS:
            del self._muted[next(iter(self._muted))]
        return muted

    def chats_in_memory(self) -> int:
        """How many chats this bot keeps something about in memory (mute states, the replier's)."""
        return len(self._muted) + self.replier.chats_in_memory()

    async def catch_up(self, client: Client) -> int:
        """Handle unread private messages that arrived while the bot was offline; returns how
        many were new to the bot (those it had seen before are not counted again).

        Each message is decided once (the database remembers), so this is safe next to
        Telegram's own delivery of missed updates."""
        limit = self.config.bot.catch_up_dialogs
        if limit <= 0:
            return 0
        handled = 0
        async for dialog in client.get_dialogs(limit=limit):
            chat = dialog.chat
            unread = dialog.unread_messages_count or 0
            if (chat.type != enums.ChatType.PRIVATE or not unread or chat.id in (None, guards.TELEGRAM_SERVICE_ID)
                    or (client.me is not None and chat.id == client.me.id)):
                continue
            messages = [m async for m in client.get_chat_history(chat.id, limit=min(unread, 20))]
            for message in reversed(messages):     # oldest first
                if not message.outgoing:
                    result = await self.on_incoming(client, message)
                    handled += result is not None and result.reason != DUPLICATE and result.outcome != ""
        return handled

    async def tick(self, client: Client) -> int:
        """Answer what waited (the quiet period, a cooldown, a pause) and may go now."""
        return await self.replier.run_due(self.transport(client))

    async def recover(self, client: Client):
        """Settle what a dead process of this bot left claimed (see `AutoReplier.recover`)."""
        return await self.replier.recover(self.transport(client))


def _chat_label(chat) -> str:
    if getattr(chat, "username", None):
        return f"@{chat.username}"
    return " ".join(part for part in (chat.first_name, chat.last_name) if part)[:100]


def _mode(reply: Reply) -> enums.ParseMode:
    return enums.ParseMode.HTML if reply.html else enums.ParseMode.DISABLED


def _layout(reply: Reply):
    """The text pieces to send and the document to attach for `reply`."""
    text = reply.text.strip()
    document = reply.document
    if not text:
        pieces = []
    elif reply.html:
        pieces = [text] if utf16_length(text) <= TELEGRAM_LIMIT else []
    else:
        pieces = split_message(text)
        if len(pieces) > MAX_TEXT_PIECES:
            pieces = []
    if text and not pieces:
        # Too long for messages: the whole answer as a file, with a note in its place.
        extension = "html" if reply.html else "txt"
        document = document or Attachment(text.encode("utf-8"), f"answer.{extension}")
        pieces = ["📄 The answer is long; it is in the file below."]
    if not pieces:
        attached = reply.document or reply.photo
        caption = attached.caption if attached else ""
        pieces = [caption or "📎 Sent below."]
    return pieces, document


def _file(attachment: Attachment) -> str | io.BytesIO:
    """What Pyrogram uploads: a file's path (read in chunks, never whole), or the bytes."""
    if attachment.path:
        return attachment.path
    stream = io.BytesIO(attachment.data)
    stream.name = attachment.filename
    return stream


# --- running the bot --------------------------------------------------------------------------

async def run_bot(config: Config, credentials: TelegramCredentials, *, stop: asyncio.Event | None = None,
                  client_class: type[Client] = Client, notifier: Notifier | None = None) -> None:
    """Run one bot until `stop` is set (SIGINT/SIGTERM set it when run from the command line).

    Under systemd (`Type=notify`) it reports READY once connected, and pings the watchdog
    from its own task, so a database outage (retried, not fatal) does not look like a hang."""
    await run_bots([(config, credentials)], stop=stop, client_class=client_class, notifier=notifier)


async def run_bots(accounts: list[tuple[Config, TelegramCredentials]], *, stop: asyncio.Event | None = None,
                   client_class: type[Client] = Client, notifier: Notifier | None = None) -> None:
    """Run one or more Telegram accounts in this process until `stop` is set: each its own
    Pyrogram client, session, name and settings (configs from `userbot.accounts`), over one
    database thread, one HTTP pool and one pricer (`userbot.core.build_cores`)."""
    for config, credentials in accounts:
        require_session(config, credentials)
    check_sessions(accounts)
    stop = stop or asyncio.Event()
    notifier = notifier or Notifier()
    configs = [config for config, _ in accounts]
    runtime = open_runtime(configs[0], cache_kib=BOT_CACHE_KIB)
    cores = build_cores(configs, runtime.keyring, journal=True)
    bots, clients = [], []
    try:
        for (config, credentials), core in zip(accounts, cores):
            await core.ai.warm_up()        # the first message does not pay for lazy imports and compiling
            bot = BotApp(config, core.replier, core.registry, run_blocking=core.run_blocking)
            client = make_client(config, credentials, client_class)
            for handler in bot.handlers():
                client.add_handler(handler)
            for status_handler in bot.status_handlers():
                client.add_handler(status_handler, group=1)
            bots.append(bot)
            clients.append(client)
        for config, client in zip(configs, clients):
            await _start(client, config, stop)
            if stop.is_set():
                return
        for config, core, client in zip(configs, cores, clients):
            secure_session(config)
            await core.accountant.settle_journal()      # calls a previous run served but could not book
            log.info("bot %s running as %s; %d key(s) held", config.bot.name, _who(client.me), len(runtime.keyring))
        notifier.ready("running as " + ", ".join(_who(client.me) for client in clients))
        tasks = [asyncio.create_task(_watchdog(notifier, stop), name="watchdog")]
        for config, core, bot, client in zip(configs, cores, bots, clients):
            tasks += _account_tasks(config, core, bot, client, stop)
        await stop.wait()
        for config in configs:
            log.info("bot %s stopping", config.bot.name)
        notifier.stopping()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for config, core in zip(configs, cores):
            with contextlib.suppress(Exception):     # otherwise the heartbeat simply goes stale
                await core.run_blocking(sign_off, "bot", config.bot.name)
    finally:
        for client in clients:
            with contextlib.suppress(ConnectionError, RPCError, OSError):
                if client.is_connected:
                    await client.stop()
        await close_cores(cores)
        notifier.close()


def _account_tasks(config: Config, core: BotCore, bot: BotApp, client: Client,
                   stop: asyncio.Event) -> list[asyncio.Task]:
    """One account's background work: heartbeat, pruning, waiting conversations, alerts."""
    name = config.bot.name
    tasks = [asyncio.create_task(_heartbeats(config, core.run_blocking, stop), name=f"heartbeat {name}"),
             asyncio.create_task(_pruning(config, core.replier, core.run_blocking, stop), name=f"pruning {name}"),
             asyncio.create_task(_conversations(bot, client, stop), name=f"conversations {name}")]
    if config.bot.deliver_alerts:
        async def to_saved_messages(text: str):
            return await telegram_call(client.send_message, "me", text, parse_mode=enums.ParseMode.DISABLED,
                                       what="posting an alert", max_flood_wait=config.bot.max_flood_wait_seconds)
        tasks.append(asyncio.create_task(
            deliver_forever(to_saved_messages, claimer_name(name), interval=config.bot.alert_poll_seconds, stop=stop,
                            run_blocking=core.run_blocking), name=f"alerts {name}"))
    return tasks


def _who(me) -> str:
    if me is None:
        return "the account"
    return f"@{me.username} (id {me.id})" if me.username else f"id {me.id}"


async def _start(client: Client, config: Config, stop: asyncio.Event) -> None:
    """Connect, retrying network trouble with backoff until it works or we are stopped."""
    backoff = Backoff(2.0, 120.0)
    while not stop.is_set():
        try:
            await telegram_call(client.start, what="connecting to Telegram",
                                max_flood_wait=config.bot.max_flood_wait_seconds)
            return
        except NETWORK_ERRORS as exc:
            delay = backoff.failed()
            log.warning("cannot reach Telegram (%s); trying again in %.0f s", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def _heartbeats(config: Config, run_blocking, stop: asyncio.Event) -> None:
    info = {"deliver_alerts": config.bot.deliver_alerts}
    while not stop.is_set():
        try:
            await run_blocking(beat, "bot", config.bot.name, info)
        except Exception:
            log.exception("heartbeat failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)


async def _watchdog(notifier: Notifier, stop: asyncio.Event) -> None:
    if not notifier.watchdog_seconds:
        return
    while not stop.is_set():
        notifier.watchdog()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), notifier.watchdog_seconds / 3)


async def _pruning(config: Config, replier: AutoReplier, run_blocking, stop: asyncio.Event) -> None:
    kept = max(HANDLED_KEPT, 2 * dt.timedelta(minutes=config.autoreply.max_message_age_minutes))
    while not stop.is_set():
        try:
            removed = await run_blocking(replier.store.prune_handled, utcnow() - kept)
            if removed:
                log.info("forgot %d handled-message records older than %s", removed, kept)
        except Exception:
            log.exception("pruning handled messages failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), PRUNE_EVERY_SECONDS)


async def _conversations(bot: BotApp, client: Client, stop: asyncio.Event) -> None:
    """Settle a dead run's claims, catch up with what arrived offline, then answer what waits."""
    try:
        recovered = await bot.recover(client)
        if recovered.answered_before or recovered.taken_up or recovered.commands:
            log.info("after a restart: %d message(s) found answered, %d answered now, %d command(s) settled",
                     recovered.answered_before, recovered.taken_up, recovered.commands)
    except Exception:
        log.exception("settling interrupted replies failed")
    try:
        handled = await bot.catch_up(client)
        if handled:
            log.info("caught up with %d message(s) that arrived while the bot was offline", handled)
    except Exception:
        log.exception("catching up with missed messages failed")
    while not stop.is_set():
        try:
            await bot.tick(client)
        except Exception:
            log.exception("answering waiting messages failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
