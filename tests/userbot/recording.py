"""A Pyrogram client that never connects and records what the bot asks of Telegram,
plus builders of real `pyrogram.types` messages. Works with kurigram and upstream Pyrogram."""
from __future__ import annotations

import datetime as dt
import inspect
import io
import itertools
import os
import stat
from dataclasses import dataclass, field

from pyrogram import Client, enums, raw
from pyrogram.errors import UsernameNotOccupied
from pyrogram.types import Chat, Dialog, Message, Photo, User

OWNER_ID = 424242
ALICE_ID = 1001


@dataclass
class Call:
    method: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    path: str = ""              # a file sent by its path: where it was,
    mode: int = 0               # its permission bits when it was sent,
    dir_mode: int = 0           # and its directory's


def local_time(utc: dt.datetime) -> dt.datetime:
    """A naive UTC time as Pyrogram gives dates: naive local time."""
    return utc.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


class RecordingClient(Client):
    """A real `pyrogram.Client` whose Telegram-facing methods record instead of sending."""

    def __init__(self, owner: User | None = None, **kwargs):
        super().__init__("recording", api_id=1, api_hash="0" * 32, in_memory=True, **kwargs)
        self.me = owner or make_user(OWNER_ID, "Owner", is_self=True, username="owner")
        self.calls: list[Call] = []
        self.users: dict[str, User] = {}            # username -> user, for get_users
        self.muted: set[int] = set()                 # chat ids muted by the owner
        self.dialogs: list[Dialog] = []
        self.histories: dict[int, list[Message]] = {}
        self.fail_sends = 0                          # raise on the next N send_message calls
        self.edit_errors: list[Exception] = []       # raised by the next edit_message_text calls
        self.files: dict[str, bytes] = {}            # file_id -> the bytes download_media serves
        self._ids = itertools.count(50_000)

    # --- what the bot sends ------------------------------------------------------------------

    async def send_message(self, chat_id, text, **kwargs):
        if self.fail_sends:
            self.fail_sends -= 1
            raise OSError("network is down")
        self.calls.append(Call("send_message", (chat_id, text), kwargs))
        sent = self._sent(chat_id, text=text)
        if isinstance(chat_id, int):
            self.histories.setdefault(chat_id, []).append(sent)     # the chat's history has it, as Telegram's would
        return sent

    async def edit_message_text(self, chat_id, message_id, text, **kwargs):
        if self.edit_errors:
            raise self.edit_errors.pop(0)
        self.calls.append(Call("edit_message_text", (chat_id, message_id, text), kwargs))
        return self._sent(chat_id, text=text, message_id=message_id)

    async def send_chat_action(self, chat_id, action, **kwargs):
        self.calls.append(Call("send_chat_action", (chat_id, action), kwargs))
        return True

    async def send_document(self, chat_id, document, **kwargs):
        self.calls.append(_file_call("send_document", chat_id, document, kwargs))
        return self._sent(chat_id)

    async def send_photo(self, chat_id, photo, **kwargs):
        self.calls.append(_file_call("send_photo", chat_id, photo, kwargs))
        return self._sent(chat_id)

    async def read_chat_history(self, chat_id, max_id: int = 0):
        self.calls.append(Call("read_chat_history", (chat_id, max_id)))
        return True

    async def delete_messages(self, chat_id, message_ids, **kwargs):
        self.calls.append(Call("delete_messages", (chat_id, message_ids), kwargs))
        return 1

    # --- what the bot asks -------------------------------------------------------------------

    async def get_users(self, user_ids):
        self.calls.append(Call("get_users", (user_ids,)))
        user = self.users.get(str(user_ids).lstrip("@").lower())
        if user is None:
            raise UsernameNotOccupied()
        return user

    async def resolve_peer(self, peer_id):
        return raw.types.InputPeerUser(user_id=int(peer_id), access_hash=0)

    async def invoke(self, query, *args, **kwargs):
        if isinstance(query, raw.functions.account.GetNotifySettings):
            muted = query.peer.peer.user_id in self.muted
            return raw.types.PeerNotifySettings(mute_until=2**31 - 1 if muted else 0)
        raise AssertionError(f"unexpected raw call {type(query).__name__}")

    async def get_dialogs(self, limit: int = 0, **kwargs):
        for dialog in self.dialogs[:limit or None]:
            yield dialog

    async def get_messages(self, chat_id=None, message_ids=None, **kwargs):
        """One message of a chat's history (as Telegram keeps it), or None."""
        self.calls.append(Call("get_messages", (chat_id, message_ids)))
        return next((m for m in self.histories.get(chat_id, []) if m.id == message_ids), None)

    async def download_media(self, message, file_name: str = "downloads/", in_memory: bool = False, **kwargs):
        media = getattr(message, "photo", None) or getattr(message, "document", None)
        self.calls.append(Call("download_media", (message.id,), {"in_memory": in_memory}))
        if not in_memory:
            raise AssertionError("the bot downloads into memory only")
        data = self.files[media.file_id]
        stream = io.BytesIO(data)
        stream.name = f"photo_{message.id}.jpg"
        return stream

    async def get_chat_history(self, chat_id, limit: int = 0, **kwargs):
        for message in list(reversed(self.histories.get(chat_id, [])))[:limit or None]:   # newest first
            yield message

    # --- reading the record ------------------------------------------------------------------

    def sent(self, method: str = "send_message", chat_id=None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (chat_id is None or c.args[0] == chat_id)]

    def texts(self, chat_id=None) -> list[str]:
        return [c.args[1] for c in self.sent("send_message", chat_id)]

    def edits(self) -> list[str]:
        return [c.args[2] for c in self.sent("edit_message_text")]

    def _sent(self, chat_id, *, text: str | None = None, message_id: int | None = None) -> Message:
        chat = Chat(id=chat_id if isinstance(chat_id, int) else self.me.id, type=enums.ChatType.PRIVATE)
        return Message(client=self, id=message_id or next(self._ids), chat=chat, from_user=self.me,
                       date=dt.datetime.now(), text=text, outgoing=True)


def _file_call(method: str, chat_id, file, kwargs) -> Call:
    """A file sent as Pyrogram takes it: a path (read as Telegram would upload it) or a named buffer."""
    if isinstance(file, str):
        with open(file, "rb") as sent:
            data = sent.read()
        name = kwargs.get("file_name") or os.path.basename(file)
        return Call(method, (chat_id, name, data), kwargs, path=file, mode=stat.S_IMODE(os.stat(file).st_mode),
                    dir_mode=stat.S_IMODE(os.stat(os.path.dirname(file)).st_mode))
    return Call(method, (chat_id, file.name, file.getvalue()), kwargs)


def make_user(user_id: int, first_name: str, *, is_bot: bool = False, is_contact: bool = False,
              is_self: bool = False, username: str | None = None) -> User:
    return User(id=user_id, first_name=first_name, is_bot=is_bot, is_contact=is_contact, is_self=is_self,
                username=username)


_message_ids = itertools.count(1)


def incoming(sender: User, text: str | None = "hello there", *, date: dt.datetime | None = None,
             client: Client | None = None, message_id: int | None = None, service=None,
             chat_type=None, **media) -> Message:
    """A message `sender` sent to the owner in their private chat (date: naive UTC)."""
    chat_type = chat_type or (enums.ChatType.BOT if sender.is_bot else enums.ChatType.PRIVATE)
    chat = Chat(id=sender.id, type=chat_type, first_name=sender.first_name, username=sender.username)
    return Message(client=client, id=message_id or next(_message_ids), from_user=sender, chat=chat,
                   date=local_time(date or _utcnow()), text=text, outgoing=False, service=service, **media)


def photo(file_id: str, size: int, *, width: int = 1280, height: int = 960) -> Photo:
    """A real `pyrogram.types.Photo` (its bytes are served by `RecordingClient.files[file_id]`)."""
    return Photo(file_id=file_id, file_unique_id=f"u-{file_id}", width=width, height=height, file_size=size,
                 date=dt.datetime.now())


def in_group(sender: User, text: str, *, client: Client | None = None) -> Message:
    chat = Chat(id=-100777, type=enums.ChatType.SUPERGROUP, title="A group")
    return Message(client=client, id=next(_message_ids), from_user=sender, chat=chat,
                   date=local_time(_utcnow()), text=text, outgoing=False)


def saved(client: RecordingClient, text: str, *, forwarded: bool = False) -> Message:
    """The owner typing `text` in Saved Messages from another session."""
    chat = Chat(id=client.me.id, type=enums.ChatType.PRIVATE, first_name=client.me.first_name)
    extra = _forwarded() if forwarded else {}
    return Message(client=client, id=next(_message_ids), from_user=client.me, chat=chat,
                   date=local_time(_utcnow()), text=text, outgoing=True, **extra)


def owner_in_chat(client: RecordingClient, peer: User, text: str, *, date: dt.datetime | None = None) -> Message:
    """The owner writing to `peer` from another session."""
    chat = Chat(id=peer.id, type=enums.ChatType.PRIVATE, first_name=peer.first_name, username=peer.username)
    return Message(client=client, id=next(_message_ids), from_user=client.me, chat=chat,
                   date=local_time(date or _utcnow()), text=text, outgoing=True)


def dialog(chat_id: int, first_name: str, unread: int, top: Message) -> Dialog:
    """A Dialog, filling what this Pyrogram's constructor requires."""
    chat = Chat(id=chat_id, type=enums.ChatType.PRIVATE, first_name=first_name)
    values = dict(chat=chat, top_message=top, unread_messages_count=unread, unread_mentions_count=0,
                  unread_mark=False, is_pinned=False)
    parameters = inspect.signature(Dialog.__init__).parameters
    for name, parameter in parameters.items():
        if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty and name not in values:
            values[name] = False if "bool" in str(parameter.annotation) else 0
    return Dialog(**values)


def _forwarded() -> dict:
    parameters = inspect.signature(Message.__init__).parameters
    if "forward_date" in parameters:
        return {"forward_date": dt.datetime.now()}
    from pyrogram.types import MessageOriginUser
    return {"forward_origin": MessageOriginUser(date=dt.datetime.now(), sender_user=make_user(9, "X"))}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def deliver(client: Client, handlers, message: Message) -> bool:
    """Dispatch `message` like Pyrogram's dispatcher: the first handler whose filters match."""
    for handler in handlers:
        if await handler.check(client, message):
            await handler.callback(client, message)
            return True
    return False
