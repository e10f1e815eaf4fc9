"""What the long-lived bot process does not load (bench/memory.py measures what it costs)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]
NEVER = ("matplotlib", "rich", "jinja2", "aiohttp.web", "genai_prices.data", "trio")


def test_the_bot_and_its_http_client_load_no_charts_terminal_tables_templates_prices_or_trio():
    code = ("import sys, openai, userbot.app; from userbot.core import keep_trio_out; keep_trio_out(); "
            "openai.AsyncOpenAI(api_key='sk-test', base_url='http://127.0.0.1:9/v1'); "
            f"print(sorted(m for m in sys.modules if sys.modules[m] is not None and m.startswith({NEVER!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_keep_trio_out_httpx_would_load_trio_when_installed():
    code = "import sys, openai; openai.AsyncOpenAI(api_key='sk-test'); print('trio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    try:
        import trio  # noqa: F401
    except ImportError:
        assert done.stdout.strip() == "False"
    else:
        assert done.stdout.strip() == "True"        # why the bot keeps it out


DRIVERS = ("psycopg2", "psycopg", "pymysql", "MySQLdb")
LOADED_DRIVERS = f"sorted({{m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}} & {set(DRIVERS)!r})"


def test_the_bot_on_sqlite_loads_no_postgresql_or_mysql_driver(tmp_path):
    config = tmp_path / "bot.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "bot.db"}"\n')
    # The real entry point, as far as it goes without Telegram credentials (userbot.app and peewee loaded).
    code = (f"import sys; from userbot.__main__ import main; code = main(['login', '-c', {str(config)!r}]); "
            f"print(code, 'peewee' in sys.modules, 'userbot.app' in sys.modules, {LOADED_DRIVERS})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_API")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=env, stdin=subprocess.DEVNULL)
    assert done.stdout.strip() == "2 True True []"


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_a_bot_on_postgresql_or_mysql_loads_its_driver_and_works(backend, tmp_path):
    with fresh_database_url(backend, tmp_path) as url:
        code = ("import sys; from shared.core.db_drivers import keep_unused_drivers_out; "
                f"keep_unused_drivers_out({url!r}); import userbot.run; "          # as `tokenpool-bot` does
                "from shared.core.db import connect_database; "
                f"print(connect_database({url!r}).execute_sql('SELECT 41 + 1').fetchone()[0], {LOADED_DRIVERS})")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    driver = {"postgres": "psycopg2", "mysql": "pymysql"}[backend]
    assert done.stdout.strip() == f"42 {[driver]}"


def test_once_peewee_is_loaded_no_driver_is_kept_out():
    """A process that already imported peewee keeps every backend it has a driver for."""
    code = ("import sys, peewee; from shared.core.db_drivers import keep_unused_drivers_out; "
            "print(keep_unused_drivers_out('sqlite:///x.db'), peewee.psycopg2 is not None, peewee.mysql is not None)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] True True"
