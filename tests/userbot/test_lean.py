"""What the long-lived bot process does not load (bench/memory.py measures what it costs)."""
import subprocess
import sys
from pathlib import Path

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
