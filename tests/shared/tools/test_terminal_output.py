"""Terminal output never loses data: piped output is complete, an 80-column terminal drops the
least important columns and says which, nothing is cut to "…"; --json is the reference."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from shared.core.accounting import CallRecord, record_call
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, ChatState
from shared.core.pricing import Pricer
from shared.tools.cli import build_parser, main
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[3]
LABELS = ["one", "two", "three-little-pigs", "a-rather-long-label-for-key-four"]
NAMED_CHAT, UNNAMED_CHAT = 1001, 1002
CHATS = [NAMED_CHAT, UNNAMED_CHAT, None, NAMED_CHAT]       # the chat of each key's calls


@pytest.fixture
def cli_config(tmp_path, sqlite_db, sqlite_url):
    """A config file over a database with four keys (long labels) and some recorded calls."""
    keys = [{"label": label, "api_key": f"sk-term-{i:02d}-{'x' * 24}", "daily_token_limit": 2_500_000}
            for i, label in enumerate(LABELS)]
    config = make_config(keys, url=sqlite_url)
    ring = sync_keys(config)
    ChatState.create(bot="bot-with-a-name", chat_id=NAMED_CHAT, label="Alice Wonderland", username="alice_w")
    for n, key_id in enumerate(ring.ids()):
        key = ApiKey.get_by_id(key_id)
        for i in range(n + 1):
            record_call(CallRecord(key_id=key_id, bot="bot-with-a-name", operation="autoreply",
                                   model="gpt-4o-mini", input_tokens=123_456 * (n + 1), output_tokens=789,
                                   duration_ms=1234, call_id=f"t-{key_id}-{i}", chat_id=CHATS[n]),
                        anchor=key.window_anchor, pricer=Pricer(config.pricing))
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{sqlite_url}"\n' + "".join(
        f'[[keys]]\nlabel = "{k["label"]}"\napi_key = "{k["api_key"]}"\ndaily_token_limit = 2500000\n' for k in keys))
    return path


def cut(text: str) -> bool:
    """Whether rich cut a cell to "…" (the masked keys' own "sk-…" aside)."""
    return "…" in re.sub(r"sk-…\w+", "", text)


def first_column(table: str) -> str:
    """The first column's text, wrapped pieces joined."""
    return "".join(line.split("│")[1].strip() for line in table.splitlines() if line.count("│") > 2)


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TOKENPOOL_CONFIG")}


@pytest.fixture
def run_piped(capsys):
    """The CLI in-process, its standard output captured (not a terminal: the piped form)."""
    def run(*args: str) -> str:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out
    return run


def run_on_terminal(*args: str, columns: int = 80) -> str:
    """The command on a real pseudo-terminal `columns` wide; returns what it printed."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "shared.tools.cli", *args], cwd=ROOT, stdin=side, stdout=side,
                            stderr=side, env={**_env(), "TERM": "dumb", "NO_COLOR": "1"}, close_fds=True)
    os.close(side)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:            # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode()
    os.close(main)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_keys_piped_and_at_80_columns_show_what_json_shows(cli_config, run_piped):
    keys = json.loads(run_piped("keys", "--json", "-c", str(cli_config)))
    piped = run_piped("keys", "-c", str(cli_config))
    narrow = run_on_terminal("keys", "-c", str(cli_config))
    assert not cut(piped) and not cut(narrow)
    for key in keys:
        for text in (key["label"], key["status"], f"{key['used']:,} / {key['limit']:,}", f"{key['left']:,}",
                     key["masked"], f"{key['calls']:,}"):
            assert text in piped, (text, piped)
        # On 80 columns each value is either shown whole (labels wrap at most) or its column is named as left out.
        assert key["status"] in narrow and f"{key['left']:,}" in narrow
        assert key["label"] in first_column(narrow)       # whole, or wrapped over lines
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert [line for line in piped.splitlines() if "three" in line][0].count("three-little-pigs") == 1   # | grep


def test_usage_by_key_at_80_columns_drops_columns_and_names_them(cli_config, run_piped):
    report = json.loads(run_piped("usage", "1", "--by", "key", "--json", "-c", str(cli_config)))
    narrow = run_on_terminal("usage", "1", "--by", "key", "-c", str(cli_config))
    piped = run_piped("usage", "1", "--by", "key", "-c", str(cli_config))
    assert not cut(narrow) and not cut(piped)
    assert "not shown at 80 columns:" in narrow
    hidden = narrow.split("not shown at 80 columns:")[1].split("(")[0]
    assert "avg ms" in hidden
    assert max(len(line) for line in narrow.splitlines()) <= 80
    for row in report["rows"]:
        assert f"{row['total_tokens']:,}" in narrow and f"{row['total_tokens']:,}" in piped
        assert f"{row['calls']:,}" in piped and f"{row['avg_ms']:,}" in piped
    assert "not shown" not in piped


def test_recent_piped_keeps_every_column(cli_config, run_piped):
    calls = json.loads(run_piped("recent", "5", "--json", "-c", str(cli_config)))
    piped = run_piped("recent", "5", "-c", str(cli_config))
    header = next(line for line in piped.splitlines() if "time (UTC)" in line)
    for column in ("bot", "operation", "chat", "model", "key", "tokens", "ms", "outcome"):
        assert column in header
    for call in calls:
        assert f"{call['total_tokens']:,}" in piped and call["key_masked"] in piped


def test_recent_names_each_calls_chat_in_the_table_and_in_json(cli_config, run_piped):
    calls = json.loads(run_piped("recent", "10", "--json", "-c", str(cli_config)))
    names = {c["chat_id"]: c["chat_name"] for c in calls}
    assert names == {NAMED_CHAT: "Alice Wonderland (@alice_w)", UNNAMED_CHAT: "", None: ""}
    piped = run_piped("recent", "10", "-c", str(cli_config))
    rows = [line for line in piped.splitlines() if line.startswith("│")]      # one a call, newest first
    shown = {NAMED_CHAT: "│ Alice Wonderland (@alice_w) │", UNNAMED_CHAT: f"│ {UNNAMED_CHAT} ", None: "│ – "}
    assert len(rows) == len(calls)
    for call, row in zip(calls, rows):
        assert shown[call["chat_id"]] in row, (call, row)
    # On 80 columns the chat stays (less important columns go first, and are named).
    narrow = run_on_terminal("recent", "10", "-c", str(cli_config))
    assert not cut(narrow) and max(len(line) for line in narrow.splitlines()) <= 80
    assert "chat" in next(line for line in narrow.splitlines() if "time (UTC)" in line)
    assert "Alice" in narrow and "(@alice_w)" in narrow and "not shown at 80 columns:" in narrow
    assert "chat" not in narrow.split("not shown at 80 columns:")[1]


@pytest.mark.parametrize("command", [["keys"], ["stats"], ["usage", "3"], ["recent", "3"], ["budget"],
                                     ["migrate"], ["doctor"]])
def test_every_command_with_json_prints_json(cli_config, command, capsys):
    main([*command, "--json", "-c", str(cli_config)])
    json.loads(capsys.readouterr().out)


def test_commands_without_a_json_form_do_not_offer_it():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("demo", "dashboard", "monitor", "export"):
        options = {o for a in commands[name]._actions for o in a.option_strings}
        assert "--json" not in options, name
