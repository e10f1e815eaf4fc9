"""`run_bot` end to end, with a Pyrogram client that records instead of connecting:
start, handlers, heartbeat, alert delivery, catch-up, clean stop."""
import asyncio
import os
import shutil
import socket
import tempfile
import time

from shared.core.models import Alert, Heartbeat, UsageEvent
from shared.core.outbox import enqueue_alert
from shared.core.systemd import Notifier
from tests.shared.client_fixtures import sim_config
from tests.userbot.recording import (
    ALICE_ID,
    RecordingClient,
    deliver,
    dialog,
    incoming,
    make_user,
)
from userbot.app import run_bot
from userbot.session import TelegramCredentials

ALICE = make_user(ALICE_ID, "Alice", is_contact=True)


class OfflineBot(RecordingClient):
    """Built by run_bot like a real Client; start() does not connect."""
    made: list = []

    def __init__(self, name, **options):
        super().__init__()
        self.options = options
        self.missed = incoming(ALICE, "sent while the bot was down", client=self)
        self.dialogs = [dialog(ALICE_ID, "Alice", 1, self.missed)]
        self.histories[ALICE_ID] = [self.missed]
        OfflineBot.made.append(self)

    async def start(self):
        return self


async def eventually(check, hang_guard: float = 300.0):
    """Poll until `check()`; the guard only turns a hang into a failure (a loaded machine is slow)."""
    deadline = time.monotonic() + hang_guard
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_the_bot_runs_delivers_alerts_catches_up_and_stops(sqlite_db, sqlite_url, simulator):
    config = sim_config(simulator, sqlite_url, 2, bot={"alert_poll_seconds": 0.05},
                        autoreply={"cooldown_seconds": 0, "reply_after_quiet_seconds": 0})
    enqueue_alert("exhausted", "exhausted:k1:w1", "🔴 Key k1 is exhausted until 18:00 UTC")
    stop = asyncio.Event()
    OfflineBot.made.clear()
    systemd = tempfile.mkdtemp(prefix="sd")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(systemd, "notify"))
    sock.setblocking(False)
    told = []      # read as they come: a full queue would drop the bot's later notifications
    asyncio.get_running_loop().add_reader(sock.fileno(), lambda: told.append(sock.recv(4096).decode()))
    notifier = Notifier({"NOTIFY_SOCKET": os.path.join(systemd, "notify"), "WATCHDOG_USEC": "150000"})
    running = asyncio.create_task(run_bot(config, TelegramCredentials(1, "h", "SESSION"), stop=stop,
                                          client_class=OfflineBot, notifier=notifier))
    await eventually(lambda: OfflineBot.made and OfflineBot.made[0].texts("me"))
    client = OfflineBot.made[0]
    assert client.options["session_string"] == "SESSION" and client.options["in_memory"]
    assert client.texts("me") == ["🔴 Key k1 is exhausted until 18:00 UTC"]
    await eventually(lambda: client.texts(ALICE_ID))                  # the missed message, answered
    await eventually(lambda: Heartbeat.select().where(Heartbeat.name == "main").exists())

    handlers = [h for group in client.dispatcher.groups.values() for h in group]
    assert len(handlers) == 3              # the owner's messages, others' messages, the account's presence
    await deliver(client, handlers, incoming(ALICE, "and now live", client=client))
    assert len(client.texts(ALICE_ID)) == 2

    await eventually(lambda: told.count("WATCHDOG=1") >= 2)         # the watchdog is pinged as the bot runs
    stop.set()
    await asyncio.wait_for(running, 300)
    asyncio.get_running_loop().remove_reader(sock.fileno())
    while True:
        try:
            told.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    sock.close()
    shutil.rmtree(systemd)
    assert told[0] == "READY=1\nSTATUS=running as @owner (id 424242)"
    assert told.count("WATCHDOG=1") >= 2 and told[-1] == "STOPPING=1"
    assert Alert.get().delivered_at is not None
    assert {e.chat_id for e in UsageEvent.select()} == {ALICE_ID}
    assert UsageEvent.select().where(UsageEvent.operation == "autoreply").count() == 2
