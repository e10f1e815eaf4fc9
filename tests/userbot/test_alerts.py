"""Alert delivery: each alert posted once across all bot processes."""
import collections
import subprocess
import sys
from pathlib import Path

from shared.core.models import Alert
from shared.core.outbox import enqueue_alert
from userbot.alert_delivery import claimer_name, deliver_pending

ROOT = Path(__file__).resolve().parents[2]
ALERTS = 120


def test_two_bot_processes_deliver_each_alert_exactly_once(db, db_url, tmp_path):
    for i in range(ALERTS):
        enqueue_alert("exhausted", f"exhausted:k{i}:w", f"🔴 key k{i} is exhausted")
    ready = tmp_path / "ready"
    ready.mkdir()
    out = tmp_path / "saved_messages.txt"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.userbot.alert_racer", db_url, f"bot{n}", str(out),
                               str(ready), "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2)]
    results = [p.communicate(timeout=900) for p in procs]        # a hang guard only
    for proc, (_stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
    posted = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    texts = collections.Counter(text for _bot, text in posted)
    assert len(texts) == ALERTS and set(texts.values()) == {1}
    by_bot = collections.Counter(bot for bot, _text in posted)
    assert by_bot["bot1"] > 0 and by_bot["bot2"] > 0, by_bot      # both really raced
    assert [int(stdout) for stdout, _ in results] == [by_bot["bot1"], by_bot["bot2"]]
    assert not Alert.select().where(Alert.delivered_at.is_null()).exists()
    assert {a.claimed_by for a in Alert.select()} == {"bot1", "bot2"}


async def test_a_failed_post_gives_the_alert_back_for_later(sqlite_db):
    for i in range(3):
        enqueue_alert("low", f"low:{i}", f"🟡 key {i} is low")
    posted = []

    async def flaky_send(text):
        if len(posted) == 1 and not getattr(flaky_send, "failed", False):
            flaky_send.failed = True
            raise OSError("network is down")
        posted.append(text)

    claimer = claimer_name("main")
    assert await deliver_pending(flaky_send, claimer) == 1
    assert Alert.select().where(Alert.claimed_by.is_null()).count() == 2     # released, not lost
    assert await deliver_pending(flaky_send, claimer) == 2
    assert await deliver_pending(flaky_send, claimer) == 0
    assert posted == ["🟡 key 0 is low", "🟡 key 1 is low", "🟡 key 2 is low"]
