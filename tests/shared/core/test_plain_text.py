"""Text columns take what a backend would refuse (NUL on PostgreSQL, lone surrogates anywhere)."""
from __future__ import annotations

from shared.core.models import ChatMessage, ChatState, utcnow
from shared.core.plain_text import storable


def test_storable_drops_nul_and_lone_surrogates_only():
    assert storable("a\x00b\ud800c\udfffd") == "abcd"
    assert storable("emoji 😀 stay, é too") == "emoji 😀 stay, é too"


def test_text_columns_store_what_the_backend_would_refuse(db):
    ChatState.create(bot="b", chat_id=1, label="Ca\x00rol\ud83d", username="c\x00c", persona="be\x00 kind")
    ChatMessage.create(bot="b", chat_id=1, message_id=1, role="contact", text="hel\x00lo\udc00", at=utcnow())
    state = ChatState.get()
    assert (state.label, state.username, state.persona) == ("Carol", "cc", "be kind")
    assert ChatMessage.get().text == "hello"
