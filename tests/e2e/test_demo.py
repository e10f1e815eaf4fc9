"""The README's first command: `tokenpool demo` runs offline and exits 0 with the panel."""
from shared.core.db import connect_database
from shared.core.models import ApiKey, UsageEvent
from tests.shared.books import assert_books_exact


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
