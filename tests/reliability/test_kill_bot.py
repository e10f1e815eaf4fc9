"""kill -9 of a bot process in the middle of a burst of calls leaves the books consistent."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.core.db import connect_database
from shared.core.models import ApiKey, UsageEvent
from shared.core.schema import ensure_schema
from shared.tools.simulator import Simulator
from tests.backends import fresh_database_url
from tests.shared.books import assert_books_exact

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_SECONDS = 900       # only against a hang: a loaded machine may take minutes


def _config(tmp_path, url, base_url, secrets):
    keys = "".join(f'[[keys]]\nlabel = "k{i}"\napi_key = "{s}"\ndaily_token_limit = 5000000\n'
                   f'base_url = "{base_url}"\n' for i, s in enumerate(secrets))
    path = tmp_path / "config.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[database]\nurl = "{url}"\n'
                    "[autoreply]\ncooldown_seconds = 0\nreply_after_quiet_seconds = 0\n"
                    "loop_max_fast_exchanges = 1000\n" + keys)
    return path


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_mid_burst_leaves_no_half_written_call(tmp_path, backend):
    with fresh_database_url(backend, tmp_path) as url:
        secrets = [f"sk-kill-test-{i}-{os.urandom(6).hex()}" for i in range(3)]
        sim = Simulator(latency=0.01)
        for s in secrets:
            sim.add_key(s)
        base_url = sim.start_in_thread()
        try:
            config = _config(tmp_path, url, base_url, secrets)
            ensure_schema(connect_database(url))
            # The bot chats until it is killed (far more replies are asked of it than it sends
            # here); a hundred people write at once, each answered without a quiet period.
            bot = subprocess.Popen([sys.executable, "-m", "userbot", "--config", str(config), "simulate",
                                    "--seconds", "1", "--min-messages", "1000000", "--rate", "10",
                                    "--name", "victim"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                hang_guard = time.monotonic() + HANG_GUARD_SECONDS
                while UsageEvent.select().count() < 40:
                    assert bot.poll() is None, bot.stderr.read()[-2000:]
                    assert time.monotonic() < hang_guard, "the bot recorded fewer than 40 calls in 15 minutes"
                    time.sleep(0.2)
            finally:
                bot.send_signal(signal.SIGKILL)          # in the middle of the burst
                bot.wait(timeout=HANG_GUARD_SECONDS)
            served = sum(sim.stats(s).ok for s in secrets)
        finally:
            sim.stop()
        connect_database(url).close()
        events = UsageEvent.select().count()
        assert events >= 40
        # Every answer the simulator served was either recorded whole or not at all: a call
        # killed between the response and the commit is lost as a whole, never half-written.
        assert events <= served + UsageEvent.select().where(UsageEvent.outcome != "ok").count()
        assert_books_exact()
        assert sum(k.total_calls for k in ApiKey.select()) == events
