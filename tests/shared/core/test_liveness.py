"""A clean stop is shown as "stopped", not as alive nor as down; a host:pid run leaves no row."""
import datetime as dt

from shared.core.liveness import beat, heartbeats, is_alive, sign_off
from shared.core.models import utcnow
from shared.reports.queries import process_health, stats_snapshot
from shared.reports.render_json_csv import process_json
from shared.reports.render_telegram import render_stats
from tests.conftest import make_config


def test_a_signed_off_process_is_stopped_until_it_beats_again(db):
    now = utcnow()
    beat("worker", "w1", now=now)
    beat("bot", "b1", now=now)
    sign_off("worker", "w1", now=now)
    (worker,) = [p for p in process_health(now) if p.name == "w1"]
    assert (worker.alive, worker.stopped, worker.state) == (False, True, "stopped")
    assert process_json(worker)["state"] == "stopped"
    assert not is_alive(heartbeats("worker")[0], now)
    panel = render_stats(stats_snapshot(now, make_config(1)))
    assert "⚪ stopped" in panel and "🔴" not in panel
    beat("worker", "w1", now=now + dt.timedelta(seconds=5))          # started again
    assert [p.state for p in process_health(now + dt.timedelta(seconds=5)) if p.name == "w1"] == ["up"]


def test_an_ephemeral_process_forgets_its_row(db):
    beat("worker", "host:123")
    sign_off("worker", "host:123", forget=True)
    assert heartbeats("worker") == []
