"""Token estimates for when a response carries no `usage` (a stream cut short, or an
endpoint that ignores `include_usage`). Every such number is stored flagged `estimated`.

Why not tiktoken: it downloads its encoding files from the internet the first time an
encoding is used (checked with tiktoken 0.14: `get_encoding("o200k_base")` fails offline),
and tokenpool must run without network access beyond the API it calls. So the estimate is
the rule of thumb OpenAI documents for English text: one token per four characters,
rounded up, plus the chat format's overhead of about 4 tokens per message and 3 to
prime the reply. Expect it within roughly ±30 % for prose; worse for code or non-Latin
scripts.

Images (`image_url` content parts) are counted by OpenAI's published rules, at their worst
case since the estimate does not read the picture's size: models that count 512-px tiles
pay a base plus a price per tile (at most 8 tiles after OpenAI scales the image; "low"
detail is the base alone), models that count 32-px patches pay at most 1,536 patches times
their factor. gpt-4o-mini counts an image as 33⅓ times gpt-4o's tokens (the same price in
dollars), so a "low" photo is 2,833 tokens there. Reservations made from this estimate
therefore stay on the safe side.
"""
from __future__ import annotations

import math

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3

MAX_TILES = 8                       # 768 x 2048 px after OpenAI's scaling, in 512-px tiles
TILES = (85, 170)                   # base, per tile: gpt-4o, gpt-4.1, gpt-5 and most others
TILE_MODELS = (("gpt-4o-mini", (2_833, 5_667)), ("o1", (75, 150)), ("o3", (75, 150)))
MAX_PATCHES = 1_536                 # 32-px patches, for the models that count those
PATCH_MODELS = (("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46), ("gpt-5-mini", 1.62), ("gpt-5-nano", 2.46),
                ("o4-mini", 1.72))


def estimate_text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def message_text(message: dict) -> str:
    """The text of a chat message, whether `content` is a string or a list of parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def image_tokens(detail: str, model: str) -> int:
    """The most tokens `model` may count for one image of `detail` ("low", "high", "auto")."""
    name = model.rsplit("/", 1)[-1]         # "openai/gpt-4o-mini" through a proxy is gpt-4o-mini
    for prefix, factor in PATCH_MODELS:
        if name.startswith(prefix):
            return math.ceil(MAX_PATCHES * factor)
    base, tile = next((costs for prefix, costs in TILE_MODELS if name.startswith(prefix)), TILES)
    return base if detail == "low" else base + MAX_TILES * tile


def message_images(message: dict) -> list[str]:
    """The detail ("low", "high", "auto") of each image part of a chat message."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [str((part.get("image_url") or {}).get("detail") or "auto") for part in content
            if isinstance(part, dict) and part.get("type") == "image_url" and isinstance(part.get("image_url"), dict)]


def estimate_prompt_tokens(messages: list, models: tuple[str, ...] = ()) -> int:
    """Text by the rule of thumb, images at their worst case for the costliest of `models`."""
    if not messages:
        return 0
    details = [detail for m in messages for detail in message_images(m)]
    images = max((sum(image_tokens(d, model) for d in details) for model in models or ("",)), default=0)
    return REPLY_PRIMING_TOKENS + images + sum(TOKENS_PER_MESSAGE + estimate_text_tokens(message_text(m))
                                               for m in messages)
