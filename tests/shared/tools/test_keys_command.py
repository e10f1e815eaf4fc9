"""`tokenpool keys enable|disable`: say what changed, and an operator's disable persists."""
import json

import pytest

from shared.tools.cli import main


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + "".join(
        f'[[keys]]\nlabel = "{label}"\napi_key = "sk-keys-{label}-000000000000000"\n' for label in ("one", "two")))
    assert main(["migrate", "-c", str(path)]) == 0                 # `keys` (listing) only reads
    return str(path)


def _statuses(config, capsys) -> dict:
    capsys.readouterr()
    assert main(["keys", "--json", "-c", config]) == 0
    return {k["label"]: k["status"] for k in json.loads(capsys.readouterr().out)}


def _say(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out.strip()


def test_disable_persists_across_runs_and_enable_says_what_it_cleared(config, capsys):
    assert _statuses(config, capsys) == {"one": "FRESH", "two": "FRESH"}
    said = _say(capsys, "keys", "disable", "one", "-c", config)
    assert said.startswith("key 'one' disabled (was FRESH)") and "tokenpool keys enable one" in said
    assert _statuses(config, capsys) == {"one": "DISABLED", "two": "FRESH"}   # the next run synced: still off
    assert _say(capsys, "keys", "disable", "one", "-c", config) == "key 'one' was already disabled; nothing changed"
    assert _say(capsys, "keys", "enable", "one", "-c", config) == "key 'one' enabled (was DISABLED)"
    assert _statuses(config, capsys) == {"one": "FRESH", "two": "FRESH"}


def test_enable_on_a_healthy_key_changes_nothing_and_says_so(config, capsys):
    said = _say(capsys, "keys", "enable", "two", "-c", config)
    assert said == "key 'two' was not disabled, invalid or cooling down (FRESH); nothing changed"
    assert "re-enabled" not in said
    capsys.readouterr()
    assert main(["keys", "enable", "tow", "-c", config]) == 1
    assert "no key labelled 'tow'; did you mean 'two'?" in capsys.readouterr().err


def test_json_form_of_a_switch(config, capsys):
    out = _say(capsys, "keys", "disable", "two", "--json", "-c", config)
    assert json.loads(out) == {"key": "two", "action": "disable", "was": "FRESH", "changed": True}
