"""An incoming private message as plain values: what the auto-reply logic decides on.

The Telegram layer (`userbot.app`) builds these from Pyrogram messages; the offline demo
builds them itself. Nothing below this point knows about Telegram's types.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class IncomingMessage:
    chat_id: int
    message_id: int
    sender_id: int | None
    date: dt.datetime               # naive UTC, like every time in the database
    text: str = ""
    is_private: bool = True         # a one-to-one chat with a person (not a group, channel or bot chat)
    is_bot: bool = False
    is_self: bool = False           # sent by the account itself (another of its sessions)
    is_contact: bool = False
    is_service: bool = False        # "joined Telegram", calls, pins ...
    is_muted: bool = False          # the owner muted this chat's notifications
    sender_name: str = ""           # the chat's display name, as Telegram shows it now
    username: str = ""              # the sender's @username, without "@"
    media: str = ""                 # "photo", "voice", "sticker", "document", ... ("" for none)
