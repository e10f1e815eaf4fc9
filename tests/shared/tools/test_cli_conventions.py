"""CLI conventions on all three programs, and one-line errors with the fix for what users cause."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.core.config import user_data_dir
from shared.tools.cli import main

ROOT = Path(__file__).resolve().parents[3]
PROGRAMS = {"tokenpool": "shared.tools.cli", "tokenpool-bot": "userbot", "tokenpool-worker": "worker"}


def run(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENPOOL_CONFIG", "TOKENPOOL_DATABASE_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300, check=False)


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_has_version_and_takes_the_config_after_its_subcommand(program, tmp_path):
    done = run(PROGRAMS[program], "--version")
    assert done.returncode == 0 and done.stdout.startswith(f"{program} ")
    missing = tmp_path / "missing.toml"
    after = {"tokenpool": ["keys", "-c", str(missing)], "tokenpool-bot": ["login", "-c", str(missing)],
             "tokenpool-worker": ["--once", "-c", str(missing)]}[program]
    done = run(PROGRAMS[program], *after)
    assert done.returncode != 0
    assert f"{missing}: config file not found" in done.stderr and "Traceback" not in done.stderr


def test_bare_tokenpool_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tokenpool") and "keys" in out and "doctor" in out


def test_a_misspelt_command_gets_a_did_you_mean(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["kyes"])
    assert exit_.value.code == 2
    assert "did you mean 'keys'?" in capsys.readouterr().err


def test_config_before_and_after_the_command_are_the_same(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["-c", str(config), "migrate"]) == 0           # `keys` only reads (docs/design.md inv. 14)
    capsys.readouterr()
    assert main(["-c", str(config), "keys", "--json"]) == 0
    before = capsys.readouterr().out
    assert main(["keys", "--json", "--config", str(config)]) == 0
    assert capsys.readouterr().out == before


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """A fresh home and an empty current directory, with no config file anywhere."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    for name in ("TOKENPOOL_CONFIG", "TOKENPOOL_DATABASE_URL", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home, cwd


def test_no_config_file_is_a_clear_warning_and_data_goes_to_the_user_folder(no_config, capsys):
    home, cwd = no_config
    assert main(["migrate"]) == 0
    err = capsys.readouterr().err
    assert "no config file: config.toml not found" in err
    user_data = home / ".local" / "share" / "tokenpool"
    assert f"the database in {user_data}/" in err
    assert stat.S_IMODE(user_data.stat().st_mode) == 0o700 and (user_data / "tokenpool.db").is_file()
    assert list(cwd.iterdir()) == []
    assert main(["keys", "--json"]) == 0               # any directory finds the same database
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("argv", [["keys"], ["stats"], ["usage", "1"], ["doctor"], ["--help"], ["--version"], []])
def test_read_only_commands_without_a_config_file_create_nothing(no_config, argv, capsys):
    home, cwd = no_config
    try:
        code = main(argv)
    except SystemExit as exit_:        # --help, --version
        code = exit_.code
    out, err = capsys.readouterr()
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == [], (out, err)
    if argv and argv[0] in ("keys", "stats", "usage"):
        assert code == 2 and "no database at" in err and "`tokenpool migrate` creates it" in err
    elif argv == ["doctor"]:
        assert code == 3 and "run `tokenpool migrate`" in out
    else:
        assert code == 0 and out


def test_xdg_data_home_names_the_user_folder(tmp_path):
    assert user_data_dir({"XDG_DATA_HOME": str(tmp_path), "HOME": "/nowhere"}) == tmp_path / "tokenpool"
    assert user_data_dir({"XDG_DATA_HOME": "relative", "HOME": "/h"}) == Path("/h/.local/share/tokenpool")


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\nbusy_timeout_seconds = 1\n')
    return str(path)


def _one_line_error(capsys, argv) -> str:
    """The error's last line (retries before it are logged as they happen)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("tokenpool: ")
    return last


def test_an_unsupported_database_url_is_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, ["keys", "-c", _config(tmp_path, "mongodb://db.example/x")])
    assert "unsupported database URL scheme 'mongodb'" in err and "postgresql://" in err


def test_an_sqlite_path_in_a_missing_folder_is_refused_not_created(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    err = _one_line_error(capsys, ["migrate", "-c", _config(tmp_path, f"sqlite:///{missing}/x.db")])
    assert f"the folder {tmp_path / 'no'} does not exist" in err
    assert not (tmp_path / "no").exists()


def test_an_unreachable_database_is_one_line(tmp_path, capsys):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    err = _one_line_error(capsys, ["keys", "-c", _config(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/x")])
    assert "database unavailable" in err and "[database] url" in err


def test_a_busy_dashboard_port_is_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["migrate", "-c", str(config)]) == 0               # the dashboard only reads
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run("shared.tools.cli", "dashboard", "-c", str(config), "--port", str(port))
    assert done.returncode == 2
    assert f"127.0.0.1:{port} is in use" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr and "dashboard at" not in done.stdout


def test_data_dir_database_and_exports_are_owner_only(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["migrate", "-c", str(config)]) == 0
    export = tmp_path / "calls.csv"
    assert main(["export", "csv", "-c", str(config), "--output", str(export)]) == 0
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)   # noqa: E731
    assert mode(tmp_path / "data") == 0o700
    assert mode(tmp_path / "data" / "tokenpool.db") == 0o600
    assert mode(export) == 0o600
    for extra in (tmp_path / "data").glob("tokenpool.db-*"):      # -wal, -shm
        assert mode(extra) == 0o600, extra
