"""FloodWait and network errors: waited out, retried within limits, logged."""

import pytest
from pyrogram.errors import BadRequest, FloodWait, InternalServerError

from userbot.retry import flood_wait_seconds, telegram_call


class Flaky:
    """An async Telegram method that fails with the given errors, then answers."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ("sent", args, kwargs)


class Sleeps:
    def __init__(self):
        self.waits = []

    async def __call__(self, seconds):
        self.waits.append(seconds)


async def test_flood_wait_is_waited_out_and_the_call_repeated(caplog):
    sleeps, send = Sleeps(), Flaky(FloodWait(value=42))
    assert await telegram_call(send, 7, "hi", what="reply", sleep=sleeps, parse_mode=None) == \
        ("sent", (7, "hi"), {"parse_mode": None})
    assert sleeps.waits == [43] and send.calls == 2
    assert "reply: Telegram asks to wait 42 s (FloodWait); waiting" in caplog.text


async def test_a_flood_wait_over_the_limit_is_raised():
    sleeps, send = Sleeps(), Flaky(FloodWait(value=3600))
    with pytest.raises(FloodWait):
        await telegram_call(send, what="reply", sleep=sleeps, max_flood_wait=300)
    assert sleeps.waits == [] and send.calls == 1


async def test_network_errors_back_off_then_give_up(caplog):
    sleeps = Sleeps()
    send = Flaky(OSError("reset"), TimeoutError(), InternalServerError(), OSError("reset"))
    assert (await telegram_call(send, what="reply", sleep=sleeps, attempts=5))[0] == "sent"
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0]
    failing = Flaky(*[OSError("down")] * 3)
    with pytest.raises(OSError):
        await telegram_call(failing, what="reply", sleep=Sleeps(), attempts=3)
    assert failing.calls == 3
    assert "reply failed after 3 attempts: OSError: down" in caplog.text


async def test_other_telegram_errors_are_not_retried():
    send = Flaky(BadRequest("MESSAGE_EMPTY"))
    with pytest.raises(BadRequest):
        await telegram_call(send, what="reply", sleep=Sleeps())
    assert send.calls == 1


def test_flood_wait_seconds():
    assert flood_wait_seconds(FloodWait(value=17)) == 17
    assert flood_wait_seconds(FloodWait(value="9")) == 9
    assert flood_wait_seconds(FloodWait()) == 0
