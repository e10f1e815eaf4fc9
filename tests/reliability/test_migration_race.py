"""Processes started together on an empty database race on its migrations: each one
either applies a migration or finds it applied, and every one of them succeeds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.core.db import connect_database
from shared.core.schema import schema_status
from tests.backends import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]
RACERS = 6
ROUNDS = 3

# Each racer imports everything first, then waits for the start file, so that all of them
# reach the empty database within a few milliseconds of each other.
RACER = """
import os, sys, time
from shared.tools import cli
while not os.path.exists(sys.argv[1]):
    time.sleep(0.002)
sys.exit(cli.main(["--config", sys.argv[2], "migrate", "--json"]))
"""


def _race(tmp_path: Path, url: str) -> list[subprocess.CompletedProcess]:
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[database]\nurl = "{url}"\n'
                      '[[keys]]\nlabel = "k"\napi_key = "sk-race-0000000000000000"\n')
    start = tmp_path / "start"
    start.unlink(missing_ok=True)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(start), str(config)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(RACERS)]
    start.touch()
    done = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(racer.args, racer.returncode, out, err))
    return done


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_processes_starting_together_on_an_empty_database_all_migrate(tmp_path, backend, round_):
    with fresh_database_url(backend, tmp_path) as url:
        results = _race(tmp_path, url)
        for result in results:
            assert result.returncode == 0, result.stderr[-3000:]
            assert "Traceback" not in result.stderr
        applied_now = [json.loads(r.stdout)["applied_now"] for r in results]
        db = connect_database(url)
        applied, pending, _unknown = schema_status(db)
        db.close()
        assert pending == []
        # Every migration was applied exactly once, by one of the racers.
        assert sorted(name for names in applied_now for name in names) == sorted(applied)
