"""What the model is shown: how a contact's message is kept (text, media without text, or a
photo the model looks at) and the chat-completions messages that answer a burst."""
from __future__ import annotations

from userbot.guards import Pending, Policy
from userbot.incoming import IncomingMessage
from userbot.photos import photo_text, user_content
from userbot.state import CONTACT, MEDIA, MESSAGE, MODEL_ROLES, PHOTO, ContextLine


def build_prompt(system_prompt: str, lines: list[ContextLine], burst: list[Pending],
                 images: dict[int, bytes] | None = None, detail: str = "low") -> list[dict]:
    """The chat-completions messages: the system prompt, the chat's recent messages, then
    every message of the burst being answered (also those the context store trimmed), a
    photo's picture (from `images`, by message id) beside its caption."""
    images = images or {}
    in_burst = {p.message_id for p in burst}
    messages: list[dict] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    messages += [{"role": MODEL_ROLES[line.role], "content": line.text} for line in lines
                 if not (line.role == CONTACT and line.message_id in in_burst)]
    messages += [{"role": "user", "content": user_content(p.text, images.get(p.message_id), detail)} for p in burst]
    return messages


def kind_and_text(msg: IncomingMessage, policy: Policy) -> tuple[str, str]:
    """How a message is kept: a photo for the model ("[photo] caption"), media without text
    ("[voice]"), or text (a caption is text)."""
    if msg.media and policy.media_mode(msg.media) == "vision":
        return PHOTO, photo_text(msg.text)
    if msg.media and not msg.text.strip():
        return MEDIA, f"[{msg.media}]"
    return MESSAGE, msg.text
