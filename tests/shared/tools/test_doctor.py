import json
import os

from shared.core.liveness import beat
from shared.tools import cli
from shared.tools.doctor import Level, run_checks


def _config(tmp_path, extra=""):
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "state"\n[[keys]]\nlabel = "main"\napi_key = "sk-doctor-000000000000beef"\n' + extra)
    return path


def _levels(checks):
    return {c.name: c.level for c in checks}


def test_fresh_install_is_told_to_migrate_then_passes(tmp_path):
    path = _config(tmp_path)
    levels = _levels(run_checks(str(path)))
    assert levels["config"] is Level.OK and levels["database"] is Level.OK
    assert levels["schema"] is Level.WARN
    assert cli.main(["--config", str(path), "migrate"]) == 0
    checks = run_checks(str(path))
    levels = _levels(checks)
    assert levels["schema"] is Level.OK and levels["keys"] is Level.OK
    assert levels["worker"] is Level.WARN          # never ran
    assert levels["telegram session"] is Level.WARN
    beat("worker", "w1")
    assert _levels(run_checks(str(path)))["worker"] is Level.OK


def test_unreachable_database_fails_with_a_fix(tmp_path):
    path = _config(tmp_path, '[database]\nurl = "postgresql://nobody:pw@127.0.0.1:1/none"\n')
    checks = run_checks(str(path))
    database = checks[-1]
    assert database.name == "database" and database.level is Level.FAIL
    assert "pw@" not in database.detail and "***" in database.detail
    assert "start the database server" in database.fix


def test_world_readable_session_file_fails(tmp_path):
    path = _config(tmp_path)
    cli.main(["--config", str(path), "migrate"])
    session = tmp_path / "state" / "main.session"
    session.write_bytes(b"x")
    os.chmod(session, 0o644)
    check = [c for c in run_checks(str(path)) if c.name == "telegram session"][0]
    assert check.level is Level.FAIL and "chmod 600" in check.fix


def test_doctor_cli_json_and_exit_code(tmp_path, capsys):
    path = _config(tmp_path, "[pool]\nreset = 'x'\n")
    assert cli.main(["--config", str(path), "doctor", "--json"]) == 1
    (check,) = json.loads(capsys.readouterr().out)
    assert check["check"] == "config" and check["level"] == "fail" and "pool.reset" in check["detail"]
