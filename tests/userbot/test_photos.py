"""Photos for a vision model, through the real handler: a real `pyrogram.types.Message`
carrying a `Photo`, its bytes served by the recording client's `download_media`, the image in
the prompt as an OpenAI content part, counted in the estimate and by the simulator."""
from __future__ import annotations

import base64
import io

from PIL import Image

from shared.core.models import HandledMessage, UsageEvent
from tests.shared.client_fixtures import sim_config
from tests.userbot.conftest import TEST_AUTOREPLY
from tests.userbot.recording import ALICE_ID, incoming, make_user, photo, saved
from tests.userbot.scripted import scripted_config, scripted_openai

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
VISION = {"media_by_kind": {"photo": "vision"}}


def jpeg(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


async def send_photo(bot, caption: str | None, data: bytes, *, size: int | None = None):
    """Alice sends a photo; Telegram keeps it in the chat's history and serves its bytes."""
    picture = photo(f"file-{len(bot.client.files)}", len(data) if size is None else size)
    bot.client.files[picture.file_id] = data
    message = incoming(ALICE, None, date=bot.clock.now, client=bot.client, photo=picture, caption=caption)
    bot.client.histories.setdefault(ALICE_ID, []).append(message)
    await bot.send(message)
    return message


async def test_a_photo_and_its_caption_go_to_the_vision_model(make_bot, sqlite_url):
    received = []
    data = jpeg()
    async with scripted_openai(received, "A red square. Modern art?") as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url, vision_model="gpt-4o", **VISION))
        message = await send_photo(bot, "what do you think of this?", data)
    (request,) = received
    assert request["model"] == "gpt-4o"
    assert request["messages"][-1] == {"role": "user", "content": [
        {"type": "text", "text": "what do you think of this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(data).decode(),
                                            "detail": "low"}}]}
    assert [c.kwargs for c in bot.client.sent("download_media")] == [{"in_memory": True}]
    assert [c.args for c in bot.client.sent("get_messages")] == [(ALICE_ID, message.id)]
    assert bot.client.texts(ALICE_ID) == ["A red square. Modern art?"]
    row = HandledMessage.get(HandledMessage.message_id == message.id)
    assert (row.kind, row.outcome, row.text) == ("photo", "replied", "[photo] what do you think of this?")
    await bot.send(saved(bot.client, ".recent 1"))
    assert "Alice: “[photo] what do you think of this?” — answered" in bot.client.edits()[-1]
    await bot.send(saved(bot.client, ".autoreply status"))
    assert "Media: photos shown to the model (gpt-4o); others skipped" in bot.client.edits()[-1]


async def test_the_simulator_sees_the_image_and_the_books_count_its_tokens(make_bot, simulator, sqlite_url):
    bot = await make_bot(config=sim_config(simulator, sqlite_url, 1, autoreply={**TEST_AUTOREPLY, **VISION}))
    await send_photo(bot, None, jpeg())
    assert len(bot.client.texts(ALICE_ID)) == 1
    assert simulator.stats("k1").images == 1
    (event,) = UsageEvent.select()
    assert event.model == "gpt-4o-mini" and event.input_tokens > 2_833     # gpt-4o-mini's price of a "low" image


async def test_a_photo_no_allowance_can_hold_is_never_sent(make_bot, simulator, sqlite_url):
    """The reservation counts the image: 2,000 tokens cannot hold gpt-4o-mini's 2,833 for it."""
    bot = await make_bot(config=sim_config(simulator, sqlite_url, 1, key_settings={1: {"allowances": ["org"]}},
                                           allowances=[{"name": "org", "tokens": 2_000}],
                                           autoreply={**TEST_AUTOREPLY, **VISION}))
    await bot.send(incoming(ALICE, "hi! a photo is coming", date=bot.clock.now, client=bot.client))
    await send_photo(bot, None, jpeg())
    assert len(bot.client.texts(ALICE_ID)) == 1 and simulator.stats("k1").images == 0
    assert [r.outcome for r in HandledMessage.select().order_by(HandledMessage.message_id)] == ["replied", "no_key"]


async def test_a_photo_over_max_image_bytes_is_not_downloaded(make_bot, sqlite_url):
    received = []
    async with scripted_openai(received, "Nice caption!") as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url, max_image_bytes=1_000, **VISION,
                                                    media_text="I'll look at your photo later."))
        await send_photo(bot, None, jpeg(), size=2_000_000)       # Telegram says how large before any download
        await send_photo(bot, "and this one, the beach", jpeg() + bytes(5_000), size=900)   # larger than it said
    assert len(bot.client.sent("download_media")) == 1
    assert bot.client.texts(ALICE_ID) == ["I'll look at your photo later.", "Nice caption!"]
    (request,) = received                                  # only the captioned one reached the model, as text
    assert request["messages"][-1] == {"role": "user", "content": "[photo] and this one, the beach"}


async def test_photos_follow_media_unless_their_kind_says_otherwise(make_bot):
    ignoring = await make_bot(autoreply={"media": "text", "media_text": "Later!", "media_by_kind": {"photo": "ignore"}})
    await send_photo(ignoring, None, jpeg())
    assert ignoring.client.texts(ALICE_ID) == [] and HandledMessage.get().outcome == "media"
    assert ignoring.client.sent("download_media") == []
