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
                      ["export", "csv"], ["chart", "-o", "chart.png"], ["keys", "--json"],
                      ["allowances", "--json"]]


def _write_config(tmp_path, keys: int, url: str | None = None):
    """Keys k1..kN; k1 draws on the allowance "org", every later key on its own "org-kN"."""
    path = tmp_path / "config.toml"
    url = url or f"sqlite:///{tmp_path / 'tokenpool.db'}"
    lines = [f'[database]\nurl = "{url}"\n']
    lines += [f'[[allowances]]\nname = "{_allowance(i)}"\ntokens = 5000\n' for i in range(1, keys + 1)]
    lines += [f'[[keys]]\nlabel = "k{i}"\napi_key = "sk-readonly-{i}-{"z" * 24}"\ndaily_token_limit = 1000\n'
              f'allowances = ["{_allowance(i)}"]\n' for i in range(1, keys + 1)]
    path.write_text("".join(lines))
    return path


def _allowance(i: int) -> str:
    return "org" if i == 1 else f"org-k{i}"


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


def test_allowances_lists_the_registered_ones_and_names_those_not_registered_yet(migrated, capsys):
    path, _db_file = migrated
    assert cli.main(["--config", str(path), "allowances", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [row["name"] for row in json.loads(out)] == ["org"]
    assert "not registered yet: org-k2" in err and "tokenpool migrate" in err


def test_doctor_only_looks_and_names_the_keys_not_registered_yet(migrated, capsys):
    path, db_file = migrated
    before = _digest(db_file)
    assert cli.main(["--config", str(path), "doctor", "--json"]) == 3       # warnings: never a write
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["schema"]["level"] == "ok"
    assert checks["keys"]["level"] == "warn" and checks["keys"]["detail"].endswith("not registered in the "
                                                                                   "database yet: k2")
    assert "tokenpool migrate" in checks["keys"]["fix"]
    database.obj.close()
    assert _digest(db_file) == before
    open_readonly(config_path=str(path))
    assert _labels() == ["k1"]


def _rows(db) -> dict[str, int]:
    """Every table's row count, the migration history included."""
    return {table: db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in sorted(db.get_tables())}


def test_doctor_and_allowances_write_nothing_on_every_backend(db_url, tmp_path, capsys):
    path = _write_config(tmp_path, 1, db_url)
    assert cli.main(["--config", str(path), "migrate"]) == 0
    before = _rows(database.obj)
    database.obj.close()
    _write_config(tmp_path, 2, db_url)                  # a key and an allowance the database has not seen
    assert cli.main(["--config", str(path), "doctor", "--json"]) == 3
    assert cli.main(["--config", str(path), "allowances", "--json"]) == 0
    capsys.readouterr()
    database.obj.close()
    db = open_readonly(config_path=str(path)).db
    try:
        assert _rows(db) == before
    finally:
        db.close()


def test_doctor_and_allowances_do_not_migrate_a_database_that_is_not_migrated(db_url, tmp_path, capsys):
    path = _write_config(tmp_path, 1, db_url)
    if db_url.startswith("sqlite"):
        (tmp_path / "tokenpool-test.db").touch()          # an empty file: an SQLite database with no tables
    assert cli.main(["--config", str(path), "allowances"]) == 2
    err = capsys.readouterr().err
    assert "schema is behind" in err and "tokenpool migrate" in err and "Traceback" not in err
    database.obj.close()
    assert cli.main(["--config", str(path), "doctor", "--json"]) == 3
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["schema"]["level"] == "warn" and checks["schema"]["fix"] == "run `tokenpool migrate`"
    assert "keys" not in checks
    assert database.obj.get_tables() == []
    database.obj.close()


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
    for command in ("stats", "allowances"):
        assert cli.main(["--config", str(path), command]) == 2
        err = capsys.readouterr().err
        assert "schema is behind" in err and "tokenpool migrate" in err and "Traceback" not in err
        database.obj.close()
    assert cli.main(["--config", str(path), "doctor"]) == 3
    assert "empty database" in capsys.readouterr().out
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
