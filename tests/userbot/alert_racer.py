"""A bot process for the alert race: `python -m tests.userbot.alert_racer URL CLAIMER OUT READY_DIR PEERS`.

It waits until PEERS processes are ready, then delivers alerts with the bot's real
delivery code until none is left undelivered, "posting" each one by appending
"<claimer>\t<text>" to OUT (its stand-in for Saved Messages)."""
import asyncio
import sys
import time
from pathlib import Path

from shared.core.db import connect_database
from shared.core.models import Alert
from userbot.alert_delivery import deliver_pending


async def inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


async def race(claimer: str, out: Path) -> int:
    delivered = 0
    with out.open("a", encoding="utf-8") as posted:
        async def send(text: str) -> None:
            posted.write(f"{claimer}\t{text}\n")
            posted.flush()
            await asyncio.sleep(0.002)          # Telegram takes a moment

        deadline = time.monotonic() + 600             # a hang guard: a loaded machine is slow
        while time.monotonic() < deadline:
            count = await deliver_pending(send, claimer, run_blocking=inline, limit=5)
            delivered += count
            if count == 0:
                if not Alert.select().where(Alert.delivered_at.is_null()).exists():
                    break
                await asyncio.sleep(0.01)       # the rest is claimed by the other bot
    return delivered


def main(url: str, claimer: str, out: str, ready_dir: str, peers: int) -> None:
    db = connect_database(url)
    db.connect(reuse_if_open=True)
    ready = Path(ready_dir)
    (ready / claimer).touch()
    while len(list(ready.iterdir())) < peers:
        time.sleep(0.005)
    delivered = asyncio.run(race(claimer, Path(out)))
    db.close()
    print(delivered)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
