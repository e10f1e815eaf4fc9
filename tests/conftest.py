"""Fixtures shared by every test package: real databases and real configs."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.core.config import parse_config
from shared.core.db import connect_database
from shared.core.keys import sync_keys
from shared.core.schema import ensure_schema
from tests.backends import BACKENDS, fresh_database_url


@pytest.fixture(autouse=True, scope="session")
def _user_data_in_a_test_folder(tmp_path_factory):
    """A command run without a config file keeps its data in a test folder, not the tester's home."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A URL to an empty database, once per backend."""
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    with fresh_database_url("sqlite", tmp_path) as url:
        yield url


def open_test_db(url):
    db = connect_database(url)
    ensure_schema(db)
    return db


@pytest.fixture
def db(db_url):
    """The models bound to a migrated, empty database (every backend)."""
    db = open_test_db(db_url)
    yield db
    db.close()


@pytest.fixture
def sqlite_db(sqlite_url):
    db = open_test_db(sqlite_url)
    yield db
    db.close()


def make_config(keys=3, url="sqlite:///:memory:", **sections):
    """A validated Config with `keys` inline test keys (label k1.., limit 1,000,000 unless given)."""
    raw = {"database": {"url": url}, **sections}
    if isinstance(keys, int):
        keys = [{"label": f"k{i + 1}", "api_key": f"sk-test-{i + 1:02d}-" + "x" * 24,
                 "daily_token_limit": 1_000_000} for i in range(keys)]
    raw["keys"] = keys
    return parse_config(raw, "test.toml", env={})


@pytest.fixture
def pool(db, db_url):
    """Three synced keys on the `db` fixture's database: (config, keyring)."""
    config = make_config(3, url=db_url)
    return config, sync_keys(config)


@dataclass
class DemoRun:
    """One `tokenpool demo` run: its folder (database, config, logs, chart) and its output."""
    workdir: Path
    stdout: str
    stderr: str
    returncode: int

    @property
    def config_path(self) -> Path:
        return self.workdir / "demo-config.toml"

    def secrets(self) -> list[str]:
        return [line.split('"')[1] for line in self.config_path.read_text().splitlines()
                if line.startswith("api_key")]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The README's first command, run once per session as a real process tree."""
    home = tmp_path_factory.mktemp("demo-home")
    work = home / "demo"
    result = subprocess.run([sys.executable, "-m", "shared.tools.cli", "demo", "--seconds", "15", "--no-live",
                             "--dir", str(work)], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                            text=True, timeout=1800, env={"PATH": "/usr/bin:/bin", "HOME": str(home),
                                                         "COLUMNS": "140"})
    return DemoRun(work, result.stdout, result.stderr, result.returncode)
