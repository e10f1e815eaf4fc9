"""Read-only commands do not write (docs/design.md invariant 14): no migration, no key
registration, a database file opened read-only, and a clear refusal when the schema is behind."""
from __future__ import annotations

import hashlib
import json
import sqlite3

import peewee as pw
import pytest

from shared.core.db import database
from shared.core.models import ApiKey
from shared.core.schema import SchemaError
from shared.core.startup import open_readonly, open_runtime
from shared.tools import cli
from tests.conftest import make_config

READ_ONLY_COMMANDS = [["stats", "--json"], ["usage", "--json"], ["recent", "--json"], ["budget", "--json"],
                      ["export", "csv"], ["chart", "-o", "chart.png"], ["keys", "--json"]]


def _write_config(tmp_path, keys: int):
    path = tmp_path / "config.toml"
    lines = [f'[database]\nurl = "sqlite:///{tmp_path / "tokenpool.db"}"\n']
    lines += [f'[[keys]]\nlabel = "k{i}"\napi_key = "sk-readonly-{i}-{"z" * 24}"\ndaily_token_limit = 1000\n'
              for i in range(1, keys + 1)]
    path.write_text("".join(lines))
    return path


def _digest(path) -> str:
    """The database file and its write-ahead log (where SQLite puts a write first)."""
    wal = path.with_name(path.name + "-wal")
    return hashlib.sha256(path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")).hexdigest()


def _labels() -> list[str]:
    return [k.label for k in ApiKey.select().order_by(ApiKey.position)]


@pytest.fixture
def migrated(tmp_path, monkeypatch):
    """A database migrated with one registered key, then made read-only; the config now names two keys."""
    monkeypatch.chdir(tmp_path)
    path = _write_config(tmp_path, 1)
    assert cli.main(["--config", str(path), "migrate"]) == 0
    database.obj.close()
    _write_config(tmp_path, 2)
    db_file = tmp_path / "tokenpool.db"
    db_file.chmod(0o444)
    yield path, db_file
    database.obj.close()


@pytest.mark.parametrize("argv", READ_ONLY_COMMANDS, ids=lambda argv: argv[0])
def test_read_only_command_neither_migrates_nor_syncs_nor_touches_the_file(migrated, argv, capsys):
    path, db_file = migrated
    before = _digest(db_file)
    assert cli.main(["--config", str(path), *argv]) == 0
    database.obj.close()
    assert _digest(db_file) == before
    open_readonly(config_path=str(path))
    assert _labels() == ["k1"]                  # k2, added to the config since, was not registered


def test_keys_listing_shows_the_registered_keys(migrated, capsys):
    path, _db_file = migrated
    assert cli.main(["--config", str(path), "keys", "--json"]) == 0
    assert [row["label"] for row in json.loads(capsys.readouterr().out)] == ["k1"]


def test_a_read_only_sqlite_connection_refuses_writes(migrated):
    path, _db_file = migrated
    open_readonly(config_path=str(path))
    with pytest.raises(pw.OperationalError, match="readonly"):
        ApiKey.update(label="changed").execute()


def test_a_read_only_connection_refuses_writes_on_every_backend(db_url):
    config = make_config([{"label": "k1", "api_key": "sk-readonly-1-" + "z" * 24, "daily_token_limit": 1000}],
                         url=db_url)
    open_runtime(config).db.close()
    runtime = open_readonly(config)
    try:
        assert _labels() == ["k1"]
        with pytest.raises(pw.DatabaseError), runtime.db.atomic():
            ApiKey.update(label="changed").execute()
    finally:
        runtime.db.close()


def test_a_schema_behind_is_refused_with_a_clear_message_and_nothing_is_written(tmp_path, capsys):
    path = _write_config(tmp_path, 1)
    db_file = tmp_path / "tokenpool.db"
    sqlite3.connect(db_file).execute("CREATE TABLE other (x)").connection.close()   # not migrated
    before = _digest(db_file)
    assert cli.main(["--config", str(path), "stats"]) == 2
    err = capsys.readouterr().err
    assert "schema is behind" in err and "tokenpool migrate" in err and "Traceback" not in err
    database.obj.close()
    assert _digest(db_file) == before
    with pytest.raises(SchemaError, match="pending migrations: 0001_initial"):
        open_readonly(config_path=str(path))
    database.obj.close()


def test_a_missing_database_is_refused_and_not_created(tmp_path, capsys):
    path = _write_config(tmp_path, 1)
    assert cli.main(["--config", str(path), "usage"]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "tokenpool.db").exists()
