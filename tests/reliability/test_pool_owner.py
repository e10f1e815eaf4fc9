"""One definition of the pool: the worker's config (and the operator's `keys disable`) decide
a key's settings; a bot whose config disagrees is told so once, and follows the pool."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.core.db import connect_database
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.schema import ensure_schema
from shared.tools import cli
from shared.tools.simulator import Simulator
from tests.backends import fresh_database_url
from tests.conftest import make_config
from tests.shared.books import assert_books_exact

ROOT = Path(__file__).resolve().parents[2]


def _config(path: Path, url: str, base_url: str, keys: list[str]) -> Path:
    path.write_text(f'data_dir = "{path.parent}"\n[database]\nurl = "{url}"\n'
                    "[autoreply]\ncooldown_seconds = 0\nloop_max_fast_exchanges = 1000\n" + "".join(keys))
    return path


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_key_the_workers_config_disables_is_never_sent_a_request(tmp_path, backend):
    with fresh_database_url(backend, tmp_path) as url:
        secrets = [f"sk-pool-owner-{i}-{os.urandom(6).hex()}" for i in range(3)]
        sim = Simulator(latency=0.005)
        for s in secrets:
            sim.add_key(s)
        base_url = sim.start_in_thread()
        worker_keys = [f'[[keys]]\nlabel = "k{i}"\napi_key = "{s}"\ndaily_token_limit = 5000000\n'
                       f'base_url = "{base_url}"\n' + ("enabled = false\n" if i == 0 else "")
                       for i, s in enumerate(secrets)]
        # The bot's file lists k0 without `enabled = false`, with another limit and label.
        bot_keys = [f'[[keys]]\nlabel = "bot-k{i}"\napi_key = "{s}"\ndaily_token_limit = 900000000\n'
                    f'base_url = "{base_url}"\n' for i, s in enumerate(secrets)]
        worker_config = _config(tmp_path / "worker.toml", url, base_url, worker_keys)
        bot_config = _config(tmp_path / "bot.toml", url, base_url, bot_keys)
        ensure_schema(connect_database(url))
        worker = subprocess.Popen([sys.executable, "-m", "worker", "--config", str(worker_config)], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bot = None
        try:
            hang_guard = time.monotonic() + 900          # only against a hang: a loaded machine is slow
            while ApiKey.select().where(ApiKey.settings_owner == "worker").count() < 3:
                assert worker.poll() is None and time.monotonic() < hang_guard
                time.sleep(0.1)
            bot = subprocess.Popen([sys.executable, "-m", "userbot", "--config", str(bot_config), "simulate",
                                    "--seconds", "8", "--min-messages", "25", "--rate", "20",
                                    "--name", "disagreeing"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, stderr = bot.communicate(timeout=900)
            assert bot.returncode == 0, stderr[-3000:]
            served = [sim.requests_for(s) for s in secrets]
        finally:
            for proc in (bot, worker):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=300)
            sim.stop()
        connect_database(url)
        assert served[0] == 0 and served[1] + served[2] > 20          # counted at the simulator
        k0 = ApiKey.get(ApiKey.fingerprint == ApiKey.get(ApiKey.label == "k0").fingerprint)
        assert k0.disabled and k0.daily_token_limit == 5_000_000 and k0.label == "k0"
        assert UsageEvent.select().where(UsageEvent.key == k0.id).count() == 0
        warnings = [line for line in stderr.splitlines() if "differs from the pool" in line]
        assert len(warnings) == 3                                      # once per key, naming it
        assert any("'k0'" in w and "config_disabled is True in the pool, False here" in w for w in warnings)
        assert all("daily_token_limit is 5000000 in the pool, 900000000 here" in w for w in warnings)
        for secret in secrets:
            assert secret not in stderr
        assert_books_exact()


def test_the_operators_disable_outlives_every_config(db, db_url, tmp_path, capsys):
    config = make_config(2, url=db_url)
    sync_keys(config, owner=True)
    keys = "".join(f'[[keys]]\nlabel = "{k.label}"\napi_key = "{k.secret}"\ndaily_token_limit = 1000000\n'
                   for k in config.keys)
    path = _config(tmp_path / "operator.toml", db_url, "", [keys])
    assert cli.main(["--config", str(path), "keys", "disable", "k1"]) == 0
    assert "key 'k1' disabled" in capsys.readouterr().out
    sync_keys(config, owner=True)             # the worker restarts with k1 enabled in its file
    sync_keys(config)                         # and a bot with its own
    assert ApiKey.get(ApiKey.label == "k1").disabled and not ApiKey.get(ApiKey.label == "k2").disabled
    assert cli.main(["--config", str(path), "keys", "enable", "k1"]) == 0
    assert not ApiKey.get(ApiKey.label == "k1").disabled
