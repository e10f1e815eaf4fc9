"""Invariant 1 with real OS processes: no lost updates, no "database is locked"."""
import subprocess
import sys
from pathlib import Path

from shared.core.keys import sync_keys
from shared.core.models import UsageEvent
from tests.conftest import make_config
from tests.shared.books import assert_books_exact

ROOT = Path(__file__).resolve().parents[3]
PROCESSES = 4
CALLS = 1000


def test_four_processes_recording_at_once_keep_the_books_exact(db, db_url):
    ring = sync_keys(make_config(5, url=db_url))
    ids = ",".join(str(i) for i in ring.ids())
    procs = [subprocess.Popen([sys.executable, "-m", "tests.shared.concurrent_writer", db_url, str(seed),
                               str(CALLS), ids], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in range(PROCESSES)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert "locked" not in err
        assert out.strip() == str(CALLS)
    db.close()  # see the other processes' commits with a fresh connection
    assert UsageEvent.select().count() == PROCESSES * CALLS
    assert_books_exact()
