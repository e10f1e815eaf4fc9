"""What the simulator accepts as a chat message's `content`: a string, or a list of parts
(`text`, and `image_url` for models that see images), refused with OpenAI's kind of 400.

Image URLs must be base64 data URLs of a real JPEG, PNG, GIF or WebP picture (the bot
sends its photos that way; the simulator never fetches anything), so a test sees that the
bytes Telegram served reached the model intact.
"""
from __future__ import annotations

import base64
import binascii

TEXT_ONLY_MODELS = ("o3-mini",)           # models without vision, as on OpenAI
DETAILS = ("low", "high", "auto")
IMAGE_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"))


class ContentProblem(Exception):
    """A 400 for the request: the message and the offending parameter."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def count_images(messages: list, model: str) -> int:
    """Check every message's content; return how many images the request carries."""
    images = 0
    for i, message in enumerate(messages):
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ContentProblem(f"Invalid type for 'messages[{i}].content': expected one of a string or an "
                                 f"array of objects, but got {type(content).__name__} instead.",
                                 f"messages[{i}].content")
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image_url":
                raise ContentProblem(f"Invalid value for '{where}.type': expected 'text' or 'image_url'.",
                                     f"{where}.type")
            if message.get("role") != "user":
                raise ContentProblem(f"Image URLs are only allowed for messages with role 'user', but this "
                                     f"message with role '{message.get('role')}' contains an image URL.",
                                     f"{where}.type")
            if model in TEXT_ONLY_MODELS:
                raise ContentProblem("Invalid content type. image_url is only supported by certain models.",
                                     f"{where}.type")
            _check_image(part.get("image_url"), where)
            images += 1
    return images


def _check_image(image_url, where: str) -> None:
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise ContentProblem(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url.url")
    detail = image_url.get("detail", "auto")
    if detail not in DETAILS:
        raise ContentProblem(f"Invalid value: '{detail}'. Supported values are: 'low', 'high', and 'auto'.",
                             f"{where}.image_url.detail")
    url = image_url["url"]
    head, sep, data = url.partition(";base64,")
    if not (sep and head.startswith("data:image/")):
        raise ContentProblem(f"Invalid '{where}.image_url.url'. Expected a base64-encoded data URL with an image "
                             "MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=').",
                             f"{where}.image_url.url")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ContentProblem("Invalid base64 image_url.", f"{where}.image_url.url") from None
    if not (any(raw.startswith(magic) for magic, _ in IMAGE_MAGIC) or raw[8:12] == b"WEBP"):
        raise ContentProblem("You uploaded an unsupported image. Please make sure your image has one of the "
                             "following formats: ['png', 'jpeg', 'gif', 'webp'].", f"{where}.image_url.url")
