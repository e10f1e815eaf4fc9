import json
import os

from shared.core.liveness import beat
from shared.core.startup import open_runtime
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
    checks = run_checks(str(path))
    levels = _levels(checks)
    assert levels["config"] is Level.OK and levels["database"] is Level.WARN and "schema" not in levels
    assert checks[-1].fix == "run `tokenpool migrate`" and "no database at" in checks[-1].detail
    assert not (tmp_path / "state").exists()       # the doctor looks; it creates nothing
    assert cli.main(["--config", str(path), "migrate"]) == 0
    checks = run_checks(str(path))
    levels = _levels(checks)
    assert levels["schema"] is Level.OK and levels["keys"] is Level.OK
    assert levels["worker"] is Level.WARN          # never ran
    assert levels["telegram session"] is Level.WARN
    open_runtime(config_path=str(path))            # the doctor's connection was read-only: a worker's beat
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


def test_keys_advice_keeps_its_brackets_and_warnings_exit_3(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "state"\n')
    cli.main(["--config", str(path), "migrate"])
    capsys.readouterr()
    assert cli.main(["--config", str(path), "doctor"]) == 3          # warnings only: not 0
    out = capsys.readouterr().out
    assert "add a [[keys]] table" in out and "no [[keys]] in config" in out


def test_every_missing_key_variable_is_named_with_the_right_fix(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[keys]]\nlabel = "a"\napi_key_env = "TP_DOCTOR_A"\n[[keys]]\nlabel = "b"\n'
                    'api_key_env = "TP_DOCTOR_B"\n')
    (check,) = run_checks(str(path))
    assert check.level is Level.FAIL
    assert "'TP_DOCTOR_A'" in check.detail and "'TP_DOCTOR_B'" in check.detail
    assert "export" in check.fix and "tokenpool init" not in check.fix


def test_a_dead_bot_and_a_missing_api_id_are_warnings(tmp_path, monkeypatch):
    import datetime as dt

    from shared.core.models import Heartbeat, utcnow
    monkeypatch.delenv("TOKENPOOL_API_ID", raising=False)
    monkeypatch.delenv("TOKENPOOL_API_HASH", raising=False)
    path = _config(tmp_path)
    cli.main(["--config", str(path), "migrate"])
    beat("bot", "gone")
    Heartbeat.update(last_seen=utcnow() - dt.timedelta(hours=2)).where(Heartbeat.name == "gone").execute()
    beat("bot", "alive")
    checks = {c.name: c for c in run_checks(str(path))}
    assert checks["bots"].level is Level.WARN and "gone down" in checks["bots"].detail and "gone" in checks["bots"].fix
    assert checks["telegram app"].level is Level.WARN and "api_id" in checks["telegram app"].detail
    monkeypatch.setenv("TOKENPOOL_API_ID", "12345")
    monkeypatch.setenv("TOKENPOOL_API_HASH", "0123456789abcdef")
    assert {c.name: c for c in run_checks(str(path))}["telegram app"].level is Level.OK


def test_a_model_with_no_price_is_a_warning_that_names_the_override_and_what_budgets_miss(tmp_path, capsys):
    path = _config(tmp_path, '[autoreply]\nmodels = ["gpt-4o-mini", "local-llama-3"]\n')
    cli.main(["--config", str(path), "migrate"])
    capsys.readouterr()
    checks = {c.name: c for c in run_checks(str(path))}
    assert checks["pricing"].level is Level.WARN
    assert "local-llama-3" in checks["pricing"].detail and "gpt-4o-mini" not in checks["pricing"].detail
    assert checks["pricing"].fix.startswith('add [pricing.overrides."local-llama-3"]')
    assert "budgets" not in checks["pricing"].detail
    assert capsys.readouterr().err == ""                    # said once, as the check, not as a log line too
    path.write_text(path.read_text() + '[budgets]\ndaily_cost_usd = 5\nenforce = true\n')
    pricing = {c.name: c for c in run_checks(str(path))}["pricing"]
    assert "enforced cost budgets hold their calls at $0" in pricing.detail
    path.write_text(path.read_text() + '[pricing.overrides."local-llama-3"]\n'
                                       'input_per_mtok = 0.1\noutput_per_mtok = 0.2\n')
    priced = {c.name: c for c in run_checks(str(path))}["pricing"]
    assert priced.level is Level.OK and "local-llama-3" in priced.detail
