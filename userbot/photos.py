"""Photos a vision model looks at (`media_by_kind.photo = "vision"`): how they are kept and
how they enter the prompt.

A photo's message is kept as text (`[photo]` and its caption) for `.recent`, the digest and
later context; the picture itself is fetched from Telegram only when the reply is written
(a message may wait for hours, and the database is no place for pictures), and goes to the
model as an OpenAI `image_url` part holding a base64 data URL.
"""
from __future__ import annotations

import base64

PHOTO_MARK = "[photo]"
MAX_IMAGES_PER_REPLY = 4            # a burst of more photos: the newest four are looked at


def photo_text(caption: str) -> str:
    """How a photo message is kept: "[photo]" or "[photo] its caption"."""
    return f"{PHOTO_MARK} {caption.strip()}".strip()


def caption_of(text: str) -> str:
    return text.removeprefix(PHOTO_MARK).strip()


def mime_type(data: bytes) -> str:
    """Telegram re-encodes photos as JPEG; PNG and WebP are recognised for other sources."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def image_part(data: bytes, detail: str) -> dict:
    """An OpenAI chat content part carrying the picture."""
    url = f"data:{mime_type(data)};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def user_content(text: str, image: bytes | None, detail: str) -> str | list[dict]:
    """A photo message's content: its caption and the picture, or its text when the picture
    could not be had (too large, gone, a download error)."""
    if image is None:
        return text
    caption = caption_of(text)
    return ([{"type": "text", "text": caption}] if caption else []) + [image_part(image, detail)]
