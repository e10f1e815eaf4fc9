"""The README's first command: `tokenpool demo` runs offline and exits 0 with the panel."""
import json

from shared.core.db import connect_database
from shared.core.models import ApiKey, UsageEvent
from shared.tools import cli
from tests.shared.books import assert_books_exact
from tests.shared.tools.test_terminal_output import cut, run_on_terminal


def test_demo_runs_offline_rotates_keys_and_prints_the_panel(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    out = demo_run.stdout
    assert "API Key & Token Statistics" in out and "Individual Keys" in out
    assert "EXHAUSTED" in out                     # a key ran dry and the pool moved on
    chart = demo_run.workdir / "usage-chart.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    connect_database(f"sqlite:///{demo_run.workdir / 'demo.db'}")
    keys_used = {e.key_id for e in UsageEvent.select(UsageEvent.key).where(UsageEvent.outcome == "ok")}
    assert len(keys_used) >= 2                    # rotation happened
    assert_books_exact()
    assert len(demo_run.secrets()) == ApiKey.select().count()


def test_demo_tables_fit_80_columns_and_are_complete_when_piped(demo_run, tmp_path, capsys):
    """The closing tables drop their least important columns on an 80-column terminal and
    name them; piped (the session's demo run), every column is there and nothing is cut."""
    work = tmp_path / "narrow"
    narrow = run_on_terminal("demo", "--seconds", "2", "--min-messages", "5", "--no-live", "--dir", str(work))
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert "not shown at 80 columns:" in narrow and not cut(narrow)
    keys_table = _keys_section(narrow)
    for key in _keys_json(work, capsys):
        assert key["label"] in keys_table and f"{key['left']:,}" in keys_table

    piped = demo_run.stdout
    assert "not shown" not in piped and not cut(piped)
    keys_table = _keys_section(piped)
    for header in ("#", "key", "calls", "rate hits", "resets in", "forecast"):
        assert f" {header} " in keys_table.splitlines()[2], header
    assert "cached" in piped and "avg ms" in piped
    for key in _keys_json(demo_run.workdir, capsys):
        assert f"{key['used']:,} / {key['limit']:,}" in keys_table and key["masked"] in keys_table


def _keys_section(output: str) -> str:
    """The demo's "API keys" table (after the panel, which names the keys too)."""
    return output.split("\nAPI keys", 1)[1].split("\nProcesses", 1)[0]


def _keys_json(work, capsys) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["keys", "--json", "-c", str(work / "demo-config.toml")]) == 0
    return json.loads(capsys.readouterr().out)
