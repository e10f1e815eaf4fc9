"""`tokenpool ask` and `tokenpool doctor --live` against the simulator, in-process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.core.models import UsageEvent
from shared.tools import cli
from shared.tools.doctor import Level, run_checks
from shared.tools.simulator import Fault, Simulator

K1 = "sk-ask-test-" + "a" * 20 + "0001"
K2 = "sk-ask-test-" + "b" * 20 + "0002"


@pytest.fixture
def sim():
    server = Simulator(accept_unknown_keys=True)
    server.start_in_thread()
    yield server
    server.stop()


def write_config(tmp_path, sim, extra_k2: str = "", allowance: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'''data_dir = "state"
{allowance}
[[keys]]
label = "k1"
api_key = "{K1}"
base_url = "{sim.base_url}"

[[keys]]
label = "k2"
api_key = "{K2}"
base_url = "{sim.base_url}"
{extra_k2}
''')
    return str(path)


def test_ask_prints_the_answer_key_allowance_tokens_cost_and_each_failover_step(tmp_path, sim, capsys):
    allowance = '[[allowances]]\nname = "org-mini"\ntokens = 2500000\nmodels = ["gpt-4o-mini"]\n'
    path = write_config(tmp_path, sim, 'allowances = ["org-mini"]', allowance)
    sim.add_key(K1, label="k1")
    sim.script("k1", Fault.budget())
    assert cli.main(["--config", path, "ask", "--operation", "check", "hello", "there"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] and "k2 (sk-…0002)" in out and "org-mini" in out
    assert "1. k1 gpt-4o-mini quota_exhausted  422 budget_exceeded" in out
    assert "2. k2 gpt-4o-mini ok" in out
    event = UsageEvent.select().order_by(UsageEvent.id.desc()).get()
    assert event.operation == "check" and f"in {event.input_tokens:,} (cached 0) out {event.output_tokens:,}" in out
    assert "$0.0000" in out and "unpriced" not in out


def test_ask_json_and_unpriced_models(tmp_path, capsys):
    groq = Simulator(accept_unknown_keys=True, models=("llama-3.3-70b-versatile",))
    groq.start_in_thread()
    try:
        path = write_config(tmp_path, groq)
        assert cli.main(["--config", path, "ask", "--json", "--model", "llama-3.3-70b-versatile", "hi"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["unpriced"] is True and data["cost_usd"] is None and data["input_tokens"] > 0
        assert [s["outcome"] for s in data["steps"]] == ["ok"] and data["key"] == "k1"
        assert cli.main(["--config", path, "ask", "--model", "llama-3.3-70b-versatile", "hi"]) == 0
        out = capsys.readouterr().out
        assert 'tokens; no price known for llama-3.3-70b-versatile: add [pricing.overrides."llama-3.3-70b' in out
        assert "$0" not in out
    finally:
        groq.stop()


def test_ask_that_fails_says_why_and_shows_the_steps(tmp_path, sim, capsys):
    path = write_config(tmp_path, sim)
    for key, label in ((K1, "k1"), (K2, "k2")):
        sim.add_key(key, label=label)
        sim.set_fault(label, Fault.invalid())
    assert cli.main(["--config", path, "ask", "--json", "hi"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert "No API key" in data["error"]
    assert [(s["key"], s["outcome"]) for s in data["steps"]] == [("k1", "invalid_key"), ("k2", "invalid_key")]


def test_doctor_live_checks_each_key_serves_its_configured_models(tmp_path, sim):
    path = write_config(tmp_path, sim, 'models = ["gemini-*"]')
    assert cli.main(["--config", path, "migrate"]) == 0
    checks = {c.name: c for c in run_checks(path, live=True)}
    assert checks["key k1"].level is Level.OK
    assert checks["key k2"].level is Level.WARN and "gemini-*" in checks["key k2"].detail
    wrong = Path(write_config(tmp_path, sim))
    wrong.write_text(wrong.read_text().replace(f'base_url = "{sim.base_url}"\n\n[[keys]]',
                                               f'base_url = "{sim.base_url}/wrong"\n\n[[keys]]', 1))
    checks = {c.name: c for c in run_checks(str(wrong), live=True)}
    assert checks["key k1"].level is Level.FAIL and "404" in checks["key k1"].detail
