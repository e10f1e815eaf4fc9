"""kill -9 of a bot process in the middle of a burst of calls: once the bot starts again, every
call the simulator served is booked (the ones cut off in flight as estimated charges), none
twice, and the books are consistent."""
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.core.accounting import Accountant
from shared.core.db import connect_database
from shared.core.inflight import InFlight
from shared.core.journal import CallJournal, journal_path
from shared.core.models import ApiKey, KeyHold, UsageEvent
from shared.core.schema import ensure_schema
from shared.tools.simulator import Simulator
from tests.backends import fresh_database_url
from tests.shared.books import assert_books_exact
from userbot.autoreply import CHATS_AT_ONCE

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


async def _restart_settles(data_dir: Path, bot: str) -> None:
    """What the bot's next start does first: book the journal and what the dead run left in flight."""
    accountant = Accountant(bot, journal=CallJournal(journal_path(data_dir, bot)), inflight=InFlight(data_dir, bot))
    try:
        await accountant.settle_journal()
    finally:
        accountant.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_mid_burst_loses_no_served_call_and_doubles_none(tmp_path, backend, capsys):
    with fresh_database_url(backend, tmp_path) as url:
        secrets = [f"sk-kill-test-{i}-{os.urandom(6).hex()}" for i in range(3)]
        sim = Simulator(latency=0.3)             # calls take a while: several are in flight at any time
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
                while not any(f.stat().st_size for f in tmp_path.glob("inflight-victim-*.jsonl")):
                    assert bot.poll() is None and time.monotonic() < hang_guard
                    time.sleep(0.01)
            finally:
                bot.send_signal(signal.SIGKILL)          # in the middle of the burst, calls in flight
                bot.wait(timeout=HANG_GUARD_SECONDS)
            served = sum(sim.stats(s).requests for s in secrets)
        finally:
            sim.stop()
        connect_database(url).close()
        before_restart = UsageEvent.select().count()
        asyncio.run(_restart_settles(tmp_path, "victim"))
        connect_database(url).close()
        events = UsageEvent.select().count()
        assert before_restart >= 40
        in_flight = UsageEvent.select().where(UsageEvent.error_code == "process_died").count()
        lost, extra = max(0, served - events), max(0, events - served)
        assert lost == 0
        # A call written down but killed before it reached the simulator is booked as an
        # estimated charge it never cost: that is the only way to book more than was served.
        assert extra <= in_flight
        # The reservations of calls cut off in flight were settled with them; what is left is the
        # reservation of a call killed before it was written down (so never sent): it expires.
        unsent_holds = KeyHold.select().count()
        # (At most one per chat being answered at once; unsettled, they would number in_flight.)
        assert unsent_holds <= CHATS_AT_ONCE
        assert_books_exact()
        assert sum(k.total_calls for k in ApiKey.select()) == events
        assert not list(tmp_path.glob("inflight-*.jsonl")) and not journal_path(tmp_path, "victim").exists()
    with capsys.disabled():
        print(f"\n[kill -9 of a bot under load, {backend}] served {served}, booked {events} "
              f"({before_restart} before the restart, {in_flight} cut off in flight booked as estimates), "
              f"lost {lost}, doubled 0, booked but never served {extra}; reservations left to expire {unsent_holds}")
