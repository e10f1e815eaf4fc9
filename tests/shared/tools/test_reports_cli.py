"""The report commands, called in-process through the CLI's main()."""
import datetime as dt
import json

import pytest
import time_machine

from shared.core.config import load_config
from shared.reports.queries import stats_snapshot, usage_report
from shared.reports.render_json_csv import read_csv, stats_json, usage_json
from shared.tools.cli import main
from tests.shared.report_fixtures import NOW, PRICES, record_history
from tests.shared.reports.test_charts import png_size


@pytest.fixture
def cli_config(tmp_path, sqlite_db, sqlite_url):
    """A config file on the test database, with the fixed history recorded; the clock at NOW."""
    lines = [f'[database]\nurl = "{sqlite_url}"\n', "[budgets]\ndaily_tokens = 10000\n"]
    for i in (1, 2, 3):
        lines.append(f'[[keys]]\nlabel = "k{i}"\napi_key = "sk-history-{i}-{"y" * 24}{i}a{i}b"\n'
                     "daily_token_limit = 1000000\n")
    for model, price in PRICES.items():
        lines.append(f'[pricing.overrides."{model}"]\n' + "".join(f"{k} = {v}\n" for k, v in price.items()))
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    config = load_config(path)
    record_history(config)
    with time_machine.travel(NOW.replace(tzinfo=dt.UTC), tick=False):
        yield str(path), config


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_stats_json_is_the_shared_builder(cli_config, capsys):
    path, config = cli_config
    status, out, _ = run(capsys, "-c", path, "stats", "--json")
    assert status == 0
    assert json.loads(out) == json.loads(json.dumps(stats_json(stats_snapshot(NOW, config))))


def test_stats_table(cli_config, capsys):
    status, out, _ = run(capsys, "-c", cli_config[0], "stats")
    assert status == 0
    assert "API keys" in out and "k1" in out and "No worker or bot has reported yet." in out


def test_usage_json_and_table(cli_config, capsys):
    status, out, _ = run(capsys, "-c", cli_config[0], "usage", "365", "--by", "model", "--json")
    assert status == 0 and json.loads(out) == usage_json(usage_report(NOW, 365, "model"))
    status, out, _ = run(capsys, "-c", cli_config[0], "usage", "7", "--by", "op")
    assert status == 0 and "Usage by operation" in out and "autoreply" in out and "117,294" in out


def test_recent(cli_config, capsys):
    status, out, _ = run(capsys, "-c", cli_config[0], "recent", "3", "--json")
    assert status == 0
    assert [c["call_id"] for c in json.loads(out)] == ["h0029", "h0048", "h0058"]
    status, out, _ = run(capsys, "-c", cli_config[0], "recent")
    assert status == 0 and out.count("2026-03-") == 20


def test_export_to_stdout_and_to_a_file(cli_config, capsys, tmp_path):
    status, out, _ = run(capsys, "-c", cli_config[0], "export", "csv", "1")
    assert status == 0 and len(read_csv(out, "calls")) == 6            # today's calls
    target = tmp_path / "day.json"
    status, _, err = run(capsys, "-c", cli_config[0], "export", "json", "--day", "2026-03-07", "-o", str(target))
    assert status == 0 and "wrote 16 calls rows" in err
    assert len(json.loads(target.read_text())) == 16
    status, out, _ = run(capsys, "-c", cli_config[0], "export", "csv", "30", "--kind", "daily")
    assert sum(r["calls"] for r in read_csv(out, "daily")) == 60


def test_budget(cli_config, capsys):
    status, out, _ = run(capsys, "-c", cli_config[0], "budget", "--json")
    assert status == 0
    (check,) = json.loads(out)["budgets"]
    assert (check["used"], check["state"]) == (17_114, "over")
    status, out, _ = run(capsys, "-c", cli_config[0], "budget")
    assert "over" in out and "month, projected" in out


def test_chart_writes_a_png(cli_config, capsys, tmp_path):
    target = tmp_path / "chart.png"
    status, _, _ = run(capsys, "-c", cli_config[0], "chart", "14", "-o", str(target))
    assert status == 0 and png_size(target.read_bytes()) == (1200, 600)


@pytest.mark.parametrize("argv, message", [
    (["usage", "0"], "days must be between 1 and"),
    (["usage", "--by", "colour"], "cannot group by 'colour'"),
    (["recent", "5000"], "between 1 and 1000"),
    (["export", "csv", "--day", "yesterday"], "--day must be a date"),
])
def test_bad_arguments_get_a_short_message_and_status_2(cli_config, capsys, argv, message):
    status, out, err = run(capsys, "-c", cli_config[0], *argv)
    assert status == 2 and message in err and "Traceback" not in err and out == ""
