"""A real bot process (`run_bot`) whose Telegram is a JSON file: what the chats hold outlives
the process, as it does on Telegram's servers, so a test can kill -9 the bot and start it
again against the same chats.

    python -m tests.reliability.file_telegram CONFIG STATE

STATE holds {"incoming": [...], "sent": [...]}: the contacts' messages (shown unread, so the
bot's catch-up handles them at start) and every message the bot sent to a chat, written to
the file before `send_message` returns (Telegram has it from that moment on).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import signal
import sys
from pathlib import Path

from pyrogram import enums
from pyrogram.types import Chat, Message

from shared.core.config import load_config
from shared.core.logs import setup_logging
from tests.userbot.recording import RecordingClient, dialog, incoming, make_user
from userbot.app import run_bot
from userbot.session import TelegramCredentials


def read_state(path: Path) -> dict:
    return json.loads(path.read_text())


def write_state(path: Path, state: dict) -> None:
    """Atomically and durably: a SIGKILL right after must not lose or tear it."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as out:
        json.dump(state, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def new_state(path: Path, *messages: dict) -> None:
    """Chats holding `messages` ({chat_id, id, text, first_name, username}), nothing sent yet."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
    write_state(path, {"incoming": [{"date": now, **m} for m in messages], "sent": []})


class FileTelegram(RecordingClient):
    """Built by `run_bot` like a real Client; its chats are read from and written to `path`."""
    path: Path

    def __init__(self, name: str, **options):
        super().__init__()
        self.state = read_state(self.path)
        unread: dict[int, list[Message]] = {}
        for m in self.state["incoming"]:
            sender = make_user(m["chat_id"], m["first_name"], is_contact=True, username=m.get("username"))
            message = incoming(sender, m["text"], date=dt.datetime.fromisoformat(m["date"]), client=self,
                               message_id=m["id"])
            self.histories.setdefault(m["chat_id"], []).append(message)
            unread.setdefault(m["chat_id"], []).append(message)
        for s in self.state["sent"]:
            self.histories.setdefault(s["chat_id"], []).append(self._outgoing(s["chat_id"], s["id"], s["text"]))
        for history in self.histories.values():
            history.sort(key=lambda message: message.id)
        self.dialogs = [dialog(chat_id, messages[0].chat.first_name or "", len(messages), messages[-1])
                        for chat_id, messages in unread.items()]
        self._ids = itertools.count(max([s["id"] for s in self.state["sent"]], default=50_000) + 1)

    async def start(self):
        return self

    async def send_message(self, chat_id, text, **kwargs):
        sent = await super().send_message(chat_id, text, **kwargs)
        if isinstance(chat_id, int):
            self.state["sent"].append({"chat_id": chat_id, "id": sent.id, "text": text})
            write_state(self.path, self.state)
        return sent

    def _outgoing(self, chat_id: int, message_id: int, text: str) -> Message:
        return Message(client=self, id=message_id, chat=Chat(id=chat_id, type=enums.ChatType.PRIVATE),
                       from_user=self.me, date=dt.datetime.now(), text=text, outgoing=True)


def main(argv: list[str]) -> int:
    config_path, state_path = argv
    config = load_config(config_path)
    setup_logging(config.log_level)
    FileTelegram.path = Path(state_path)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_bot(config, TelegramCredentials(1, "0" * 32, "FILE"), stop=stop, client_class=FileTelegram)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
