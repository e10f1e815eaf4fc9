"""The dashboard's endpoints over real HTTP on loopback, against a real database (every backend)."""
import datetime as dt
import json
import re
import struct

import pytest
import time_machine
from aiohttp.test_utils import TestClient, TestServer

from shared.core.models import ApiKey
from shared.dashboard.security import SECURITY_HEADERS
from shared.dashboard.server import create_app
from shared.reports import queries, render_json_csv
from shared.reports.budgets import pool_projection
from shared.reports.forecast import forecast_views, recent_tokens_by_key
from shared.tools import cli
from tests.shared.dashboard_support import (
    LABELS,
    build_dashboard_fixture,
    record,
    secrets_of,
)
from tests.shared.report_fixtures import NOW

ENDPOINTS = ["/", "/api/stats", "/api/keys", "/api/recent", "/api/recent?limit=5", "/api/usage",
             "/api/usage?days=7&by=model", "/api/usage?days=30&by=op", "/api/usage?days=2&by=bot",
             "/api/usage?days=1&by=chat", "/api/usage?days=365&by=key", "/chart.png", "/chart.png?days=7",
             "/static/style.css", "/static/dashboard.js", "/static/favicon.svg"]


@pytest.fixture
def config(db, db_url):
    return build_dashboard_fixture(db_url)


@pytest.fixture
async def client(config):
    async with TestClient(TestServer(create_app(config, clock=lambda: NOW))) as client:
        yield client


@pytest.fixture
async def sqlite_client(sqlite_db, sqlite_url):
    """For the checks that do not depend on the backend."""
    config = build_dashboard_fixture(sqlite_url)
    async with TestClient(TestServer(create_app(config, clock=lambda: NOW))) as client:
        yield client


async def get_json(client, path):
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_stats_agree_with_the_reporting_core(client, config):
    stats = await get_json(client, "/api/stats")
    snapshot = queries.stats_snapshot(NOW, config)
    expected = json.loads(json.dumps(render_json_csv.stats_json(snapshot)))
    for name, value in expected.items():
        if name == "keys":
            for key, want in zip(stats["keys"], value, strict=True):
                assert {k: key[k] for k in want} == want
        elif name == "today":
            assert {k: stats["today"][k] for k in value} == value
        else:
            assert stats[name] == value, name
    assert stats["keys_total"] == 18
    assert stats["status_counts"] == {"ACTIVE": 5, "LOW": 1, "EXHAUSTED": 1, "RATE_LIMITED": 1, "INVALID": 1,
                                      "DISABLED": 1, "FRESH": 8}
    today = snapshot.today
    assert stats["today"]["successes"] == today.calls - today.errors - today.rate_hits
    projection = pool_projection(NOW)
    assert stats["projection"]["month_so_far"]["cost_nanousd"] == projection.month_so_far.cost_nanousd
    assert stats["projection"]["month_projected"]["cost_nanousd"] == projection.month_projected.cost_nanousd
    assert stats["projection"]["day_so_far"]["cost_nanousd"] > 0


async def test_forecasts_follow_the_last_hours_pace(client, config):
    stats = await get_json(client, "/api/stats")
    views = queries.key_views(NOW, config.pool.low_threshold)
    by_key, pool = forecast_views(views, recent_tokens_by_key(NOW), NOW)
    for key, view in zip(stats["keys"], views, strict=True):
        assert key["forecast"]["text"] == by_key[view.id].text
        assert key["forecast"]["tokens_per_hour"] == by_key[view.id].tokens_per_hour
    main = next(k for k in stats["keys"] if k["label"] == "main")
    assert main["forecast"]["tokens_per_hour"] == 1_500 + 1_000 + 4_900    # the error call used nothing
    pool09 = next(k for k in stats["keys"] if k["label"] == "pool-09")
    assert pool09["forecast"]["tokens_per_hour"] == 3_000                  # the 70-minute-old call is out
    assert stats["forecast"]["text"] == pool.text
    assert stats["forecast"]["tokens_per_hour"] == 1_500 + 1_000 + 4_900 + 100_000 + 3_000


async def test_keys_recent_and_usage_agree_with_the_reporting_core(client, config):
    keys = await get_json(client, "/api/keys")
    views = queries.key_views(NOW, config.pool.low_threshold)
    assert [k["label"] for k in keys] == LABELS
    for key, view in zip(keys, views):
        want = json.loads(json.dumps(render_json_csv.key_json(view)))
        assert {k: key[k] for k in want} == want
    main = keys[0]
    assert (main["rl_remaining_requests"], main["rl_remaining_tokens"]) == (4_321, 1_234_567)

    recent = await get_json(client, "/api/recent")
    assert recent == json.loads(json.dumps([render_json_csv.call_json(c) for c in queries.recent_calls(20)]))
    assert [c["key_label"] for c in recent[:3]] == ["burst", "main", "pool-09"]
    assert len(await get_json(client, "/api/recent?limit=3")) == 3

    for days, by in ((30, "day"), (7, "model"), (30, "op"), (1, "chat"), (365, "key")):
        usage = await get_json(client, f"/api/usage?days={days}&by={by}")
        assert usage == json.loads(json.dumps(render_json_csv.usage_json(queries.usage_report(NOW, days, by))))
    by_chat = await get_json(client, "/api/usage?days=1&by=chat")
    assert {row["group"] for row in by_chat["rows"]} == {"1001", "1002", "1003", "2001", "2002"}


async def test_field_names_are_the_clis_json_names(client, config, tmp_path, db_url, capsys):
    """`tokenpool stats/keys/recent/usage --json` print what the API serves (the API may add fields)."""
    path = tmp_path / "config.toml"
    keys = "".join(f'[[keys]]\nlabel = "{k.label}"\napi_key = "{k.secret}"\ndaily_token_limit = {k.daily_token_limit}\n'
                   f'enabled = {"true" if k.enabled else "false"}\n' for k in config.keys)
    path.write_text(f'[database]\nurl = "{db_url}"\n{keys}')
    cases = [(["stats"], "/api/stats"), (["keys"], "/api/keys"), (["recent", "20"], "/api/recent"),
             (["usage", "30", "--by", "model"], "/api/usage?days=30&by=model")]
    for argv, endpoint in cases:
        with time_machine.travel(NOW, tick=False):
            assert cli.main(["-c", str(path), *argv, "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        served = await get_json(client, endpoint)
        assert_contains(served, printed, endpoint)


def assert_contains(served, printed, where):
    """Every field the CLI printed is served under the same name with the same value."""
    if isinstance(printed, dict):
        assert isinstance(served, dict), where
        for name, value in printed.items():
            assert name in served, f"{where}: {name} missing"
            assert_contains(served[name], value, f"{where}.{name}")
    elif isinstance(printed, list):
        assert isinstance(served, list) and len(served) == len(printed), where
        for i, (a, b) in enumerate(zip(served, printed)):
            assert_contains(a, b, f"{where}[{i}]")
    else:
        assert served == printed, where


async def test_page_shows_every_card(client, config):
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    for label in LABELS:
        assert f'data-id="key:{label}"' in page.replace("&amp;", "&")
    for status, css in (("ACTIVE", "st-ok"), ("LOW", "st-warn"), ("EXHAUSTED", "st-bad"),
                        ("RATE_LIMITED", "st-cool"), ("INVALID", "st-bad"), ("DISABLED", "st-off"),
                        ("FRESH", "st-ok")):
        assert re.search(rf'class="badge {css}"[^>]*>{status}<', page), status
    assert "runs out ~" in page or "lasts the window" in page
    shown = page.split("<template")[0]          # the templates for new items come after the page
    assert shown.count('<tr class="oc-') == len(queries.recent_calls(20))
    assert 'class="oc-bad"' in page and 'class="oc-warn"' in page and 'class="oc-ok"' in page
    chats = re.findall(r'data-bind="chat_name\|chat_id" data-fmt="chat">([^<]*)<', shown)
    assert "2001" in chats and "–" in chats          # by id when no name is known; calls without a chat
    # Health: the worker is up, the bot last seen two hours ago is down; its name is escaped.
    assert "alt&lt;b&gt;" in page and "alt<b>" not in page
    assert re.search(r'class="proc down"[^>]*>.*?alt&lt;b&gt;', page, re.S)
    assert "ops&amp;dev" in page and "ops&dev" not in page
    assert '<img id="chart-img" src="/chart.png?days=30"' in page


async def test_page_has_no_inline_script_or_style(sqlite_client):
    page = await (await sqlite_client.get("/")).text()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/dashboard.js" defer>']
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", page)    # no inline script body
    assert not re.search(r"\sstyle\s*=", page) and "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)             # no inline event handlers
    assert "http://" not in page and "https://" not in page   # nothing from elsewhere


async def test_chart_is_a_png(sqlite_client):
    response = await sqlite_client.get("/chart.png?days=7")
    body = await response.read()
    assert response.content_type == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", body[16:24])
    assert (width, height) == (1200, 600)


async def test_every_answer_carries_the_security_headers(sqlite_client):
    client = sqlite_client
    for path in ENDPOINTS + ["/nope", "/api/nope", "/api/usage?days=x", "/static/missing.css", "/login"]:
        response = await client.get(path, allow_redirects=False)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
    assert "'unsafe-inline'" not in SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


MALFORMED = [
    ("/api/usage?days=abc", "days must be a whole number"),
    ("/api/usage?days=", "days must be a whole number"),
    ("/api/usage?days=0", "days must be between 1 and"),
    ("/api/usage?days=-3", "days must be between 1 and"),
    ("/api/usage?days=99999999999999999999", "days must be between 1 and"),
    ("/api/usage?days=1.5", "days must be a whole number"),
    ("/api/usage?by=nonsense", "cannot group by 'nonsense'"),
    ("/api/usage?by=", "by must be a word"),
    ("/api/usage?by=%3Cscript%3E", "by must be a word"),
    ("/api/usage?days=7&by=day%00", "by must be a word"),
    ("/api/recent?limit=0", "limit must be between 1 and 1000"),
    ("/api/recent?limit=ten", "limit must be a whole number"),
    ("/chart.png?days=1", "days must be between 2 and 366"),
    ("/chart.png?days=x", "days must be a whole number"),
]


async def test_malformed_parameters_get_a_400_with_a_message(sqlite_client):
    for path, message in MALFORMED:
        response = await sqlite_client.get(path)
        assert response.status == 400, path
        assert response.content_type == "application/json"
        assert message in (await response.json())["error"], path


async def test_nothing_can_be_changed(sqlite_client):
    client = sqlite_client
    before = [(k.used_today, k.calls_today, k.disabled, k.invalid) for k in ApiKey.select().order_by(ApiKey.id)]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", "/api/stats", "/api/keys", "/api/recent", "/api/usage"):
            response = await client.request(method, path, data=b"{}")
            assert response.status == 405, (method, path)
    assert [(k.used_today, k.calls_today, k.disabled, k.invalid)
            for k in ApiKey.select().order_by(ApiKey.id)] == before


async def test_new_calls_show_on_the_next_request(client):
    before = await get_json(client, "/api/stats")
    record("pool-07", NOW - dt.timedelta(seconds=1), operation="newest-op", input_tokens=7_000, output_tokens=0)
    after = await get_json(client, "/api/stats")
    assert after["today"]["used"] == before["today"]["used"] + 7_000
    assert after["today"]["calls"] == before["today"]["calls"] + 1
    assert (await get_json(client, "/api/recent?limit=1"))[0]["operation"] == "newest-op"


async def test_no_secret_ever_appears(client, config, caplog):
    secrets = secrets_of(config)
    assert secrets and all(len(s) > 20 for s in secrets)
    needles = [s.encode() for s in secrets] + [s[:14].encode() for s in secrets]
    for path in ENDPOINTS:
        body = await (await client.get(path)).read()
        for needle in needles:
            assert needle not in body, path
    for record_ in caplog.records:
        for secret in secrets:
            assert secret[:14] not in record_.getMessage()


async def test_each_key_card_lists_its_top_operations_and_chats_today(client, config):
    main = ApiKey.get(ApiKey.label == "main")
    for operation, chat, tokens in (("summary", 7, 9_000), ("summary", 7, 1_000), ("translate", 8, 500)):
        record("main", NOW - dt.timedelta(minutes=5), operation=operation, chat_id=chat, input_tokens=tokens,
               output_tokens=0)
    stats = await get_json(client, "/api/stats")
    card = next(k for k in stats["keys"] if k["label"] == "main")
    for by, field in (("operation", "top_operations"), ("chat", "top_chats")):
        expected = queries.key_top_groups(NOW, by)[main.id]
        assert card[field] == json.loads(json.dumps([render_json_csv.usage_row_json(r) for r in expected]))
    assert card["top_operations"][0]["group"] == "summary"          # 10,000 tokens just now, and more before
    assert card["top_operations"][0]["total_tokens"] >= 10_000
    assert card["top_chats"][0] == {**card["top_chats"][0], "group": "7", "total_tokens": 10_000}
    assert len(card["top_operations"]) <= 3 and len(card["top_chats"]) <= 3
    page = await (await client.get("/")).text()
    assert 'data-list="top_operations"' in page and '<span class="name">summary</span>' in page
