"""Splitting long texts into Telegram-sized messages.

Telegram limits a message to 4096 characters counted in UTF-16 code units (an emoji
outside the Basic Multilingual Plane counts twice), so that is what is counted here.
Splits prefer paragraph breaks, then line breaks, then spaces; a word longer than a
whole message is cut.
"""
from __future__ import annotations

TELEGRAM_LIMIT = 4096


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Pieces of `text`, each at most `limit` UTF-16 units, that join back to the text
    (up to the whitespace at the cuts). Empty text gives no pieces."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    text = text.strip()
    pieces = []
    while text:
        if utf16_length(text) <= limit:
            pieces.append(text)
            break
        head = _prefix_within(text, limit)
        cut = _best_cut(head)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return pieces


def _prefix_within(text: str, limit: int) -> str:
    """The longest prefix of `text` of at most `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def _best_cut(head: str) -> int:
    """Where to cut `head`: after the last paragraph break, line break or space in its
    second half, or at its end when there is none."""
    floor = len(head) // 2
    for separator in ("\n\n", "\n", " "):
        at = head.rfind(separator)
        if at > floor:
            return at + len(separator)
    return len(head)
