"""Token estimates for when a response carries no `usage` (a stream cut short, or an
endpoint that ignores `include_usage`). Every such number is stored flagged `estimated`.

Why not tiktoken: it downloads its encoding files from the internet the first time an
encoding is used (checked with tiktoken 0.14: `get_encoding("o200k_base")` fails offline),
and tokenpool must run without network access beyond the API it calls. So the estimate is
the rule of thumb OpenAI documents for English text: one token per four characters,
rounded up, plus the chat format's overhead of about 4 tokens per message and 3 to
prime the reply. Expect it within roughly ±30 % for prose; worse for code or non-Latin
scripts.
"""
from __future__ import annotations

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3


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


def estimate_prompt_tokens(messages: list) -> int:
    if not messages:
        return 0
    return REPLY_PRIMING_TOKENS + sum(TOKENS_PER_MESSAGE + estimate_text_tokens(message_text(m))
                                      for m in messages)
