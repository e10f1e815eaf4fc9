"""kill -9 of a real bot process in the middle of a reply, then a restart: the message is
answered exactly once. The process kills itself at an exact point (`TOKENPOOL_TEST_KILL_AT`,
userbot/fault_injection.py); its Telegram is a file that outlives it (file_telegram.py)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.core.db import connect_database
from shared.core.models import HandledMessage, UsageEvent
from shared.core.schema import ensure_schema
from shared.tools.simulator import Simulator
from tests.backends import fresh_database_url
from tests.reliability.file_telegram import new_state, read_state
from userbot.fault_injection import AFTER_CLAIM, AFTER_SEND, KILL_AT_ENV

ROOT = Path(__file__).resolve().parents[2]
ALICE = {"chat_id": 1001, "id": 7, "text": "are you coming tonight?", "first_name": "Alice", "username": "alice_w"}
HANG_GUARD = 300.0         # only so that a hung bot fails the test instead of stalling the suite


def _config(tmp_path, url, base_url, secret):
    path = tmp_path / "config.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[database]\nurl = "{url}"\n'
                    "[bot]\nalert_poll_seconds = 0.2\n"
                    "[autoreply]\ncooldown_seconds = 0\nreply_after_quiet_seconds = 0\n"
                    f'[[keys]]\nlabel = "k1"\napi_key = "{secret}"\ndaily_token_limit = 5000000\n'
                    f'base_url = "{base_url}"\n')
    return path


def _bot(config, state, log, kill_at: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.file_telegram", str(config), str(state)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _row() -> HandledMessage | None:
    return HandledMessage.get_or_none((HandledMessage.chat_id == ALICE["chat_id"])
                                      & (HandledMessage.message_id == ALICE["id"]))


def _wait_for(check, bot: subprocess.Popen, log_path: Path):
    deadline = time.monotonic() + HANG_GUARD
    while not check():
        assert bot.poll() is None, f"the bot exited ({bot.returncode}):\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the bot hung:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
@pytest.mark.parametrize("kill_at", [AFTER_CLAIM, AFTER_SEND])
def test_a_bot_killed_mid_reply_answers_exactly_once_after_restart(tmp_path, backend, kill_at):
    with fresh_database_url(backend, tmp_path) as url:
        secret = f"sk-kill-reply-{os.urandom(8).hex()}"
        sim = Simulator()
        sim.add_key(secret)
        base_url = sim.start_in_thread()
        config, state = _config(tmp_path, url, base_url, secret), tmp_path / "telegram.json"
        ensure_schema(connect_database(url))
        new_state(state, ALICE)
        try:
            with open(tmp_path / "first.log", "w") as log:
                first = _bot(config, state, log, kill_at)
                assert first.wait(timeout=HANG_GUARD) == -signal.SIGKILL, (tmp_path / "first.log").read_text()
            assert _row().outcome == "claimed"          # the dead process's claim
            sent_before = read_state(state)["sent"]
            assert len(sent_before) == (1 if kill_at == AFTER_SEND else 0)
            assert sim.stats(secret).ok == (1 if kill_at == AFTER_SEND else 0)

            with open(tmp_path / "second.log", "w") as log:
                second = _bot(config, state, log)
                _wait_for(lambda: _row().outcome == "replied", second, tmp_path / "second.log")
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=HANG_GUARD) == 0, (tmp_path / "second.log").read_text()
            calls = sim.stats(secret).ok
        finally:
            sim.stop()
        sent = read_state(state)["sent"]
        assert [s["chat_id"] for s in sent] == [ALICE["chat_id"]]          # answered exactly once
        assert _row().reply_id == sent[0]["id"]
        if kill_at == AFTER_SEND:
            assert sent == sent_before                       # the history showed the reply: not sent again
            assert "answered before a restart" in _row().detail
        assert calls == 1 and UsageEvent.select().count() == 1
