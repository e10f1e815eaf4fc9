"""The README's first command: `tokenpool demo` runs offline and exits 0 with the panel."""
import subprocess
import sys
from pathlib import Path

from shared.db import connect_database
from shared.models import ApiKey, UsageEvent
from tests.shared.books import assert_books_exact

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_offline_rotates_keys_and_prints_the_panel(tmp_path):
    work = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "shared.cli", "demo", "--seconds", "15", "--no-live",
                             "--dir", str(work)], cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "140"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "API Key & Token Statistics" in out and "Individual Keys" in out
    assert "EXHAUSTED" in out                     # a key ran dry and the pool moved on
    chart = work / "usage-chart.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    connect_database(f"sqlite:///{work / 'demo.db'}")
    keys_used = {e.key_id for e in UsageEvent.select(UsageEvent.key).where(UsageEvent.outcome == "ok")}
    assert len(keys_used) >= 2                    # rotation happened
    assert_books_exact()
    secrets = [line.split('"')[1] for line in (work / "demo-config.toml").read_text().splitlines()
               if line.startswith("api_key")]
    assert len(secrets) == ApiKey.select().count()
    logs = "".join(p.read_text() for p in work.glob("*.log"))
    for secret in secrets:
        assert secret not in out and secret not in result.stderr and secret not in logs
