"""Every secret of the demo's config is grepped for in the database file, the logs, the
exports, the reports and the rendered Telegram messages: never found."""
import json

from shared.core.config import load_config
from shared.core.db import connect_database
from shared.core.models import utcnow
from shared.reports import queries, render_telegram
from shared.reports.budgets import budget_report
from shared.tools import cli


def _haystacks(demo_run, capsys):
    work = demo_run.workdir
    yield "demo output", demo_run.stdout + demo_run.stderr
    for path in sorted(work.iterdir()):
        if path.name != "demo-config.toml" and path.is_file():
            yield path.name, path.read_bytes().decode("latin-1")     # database, WAL, logs, chart
    config = str(demo_run.config_path)
    for argv in (["export", "csv", "--day", str(utcnow().date())], ["export", "json"],
                 ["export", "csv", "--kind", "daily"], ["stats", "--json"], ["keys", "--json", "--all"],
                 ["usage", "--by", "key", "--json"], ["recent", "500", "--json"], ["stats"], ["recent"],
                 ["doctor", "--json"]):
        cli.main(["--config", config, *argv])
        captured = capsys.readouterr()
        yield " ".join(argv), captured.out + captured.err
    settings = load_config(config)
    connect_database(settings.database_url)
    now = utcnow()
    yield ".stats", render_telegram.render_stats(queries.stats_snapshot(now, settings))
    yield ".usage", render_telegram.render_usage(queries.usage_report(now, 30, "key"))
    yield ".recent", render_telegram.render_recent(queries.recent_calls(50), now)
    yield ".budget", render_telegram.render_budget(budget_report(now, settings))


def test_no_secret_anywhere(demo_run, capsys):
    assert demo_run.returncode == 0, demo_run.stderr[-2000:]
    secrets = demo_run.secrets()
    assert len(secrets) == 4
    looked = []
    for name, text in _haystacks(demo_run, capsys):
        looked.append(name)
        for secret in secrets:
            assert secret not in text, f"a key secret appears in {name}"
            assert secret[8:] not in text, f"most of a key secret appears in {name}"
    assert {"demo.db", "worker.log", "demo-bot-1.log", "export json", ".stats"} <= set(looked)
    # The reports ran against the demo's real data, so the scan above saw real content.
    cli.main(["--config", str(demo_run.config_path), "stats", "--json"])
    assert json.loads(capsys.readouterr().out)["today"]["calls"] > 0
