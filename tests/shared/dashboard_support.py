"""The dashboard tests' fixture: 18 keys in every status (the README's `.stats` panel), plus calls of the last hour."""
from __future__ import annotations

import dataclasses
import datetime as dt

from shared.core.accounting import Accountant, CallRecord, Outcome, RateLimitSnapshot
from shared.core.models import ApiKey
from tests.shared.report_fixtures import NOW, PANEL_KEYS, build_panel

# (key label, minutes before NOW, operation, outcome, input tokens, output tokens, chat id)
CALLS = [
    ("main", 50, "autoreply", Outcome.OK, 1_200, 300, 1001),
    ("main", 30, "autoreply", Outcome.OK, 800, 200, 1002),
    ("main", 20, "summary", Outcome.OK, 4_000, 900, 1001),
    ("main", 10, "autoreply", Outcome.SERVER_ERROR, 0, 0, 1003),
    ("backup", 40, "autoreply", Outcome.OK, 90_000, 10_000, 2001),
    ("burst", 5, "autoreply", Outcome.RATE_LIMITED, 0, 0, 2002),
    ("pool-09", 70, "autoreply", Outcome.OK, 5_000, 1_000, None),     # before the pace hour
    ("pool-09", 15, "translate", Outcome.OK, 2_500, 500, None),
]


def record(label: str, at: dt.datetime, operation="autoreply", outcome=Outcome.OK, input_tokens=100,
           output_tokens=50, chat_id=None, bot="main") -> None:
    key_id = ApiKey.get(ApiKey.label == label).id
    Accountant(bot).record(CallRecord(
        key_id=key_id, bot=bot, operation=operation, model="gpt-4o-mini", outcome=outcome,
        input_tokens=input_tokens, output_tokens=output_tokens, duration_ms=420, chat_id=chat_id, at=at,
        rate_limits=RateLimitSnapshot(remaining_requests=4_321, remaining_tokens=1_234_567)))


def build_dashboard_fixture(url: str, **dashboard):
    """The 18-key panel at NOW with a few calls; returns the config (with `[dashboard]` settings)."""
    config = build_panel(url)
    for label, minutes, operation, outcome, tokens_in, tokens_out, chat in CALLS:
        record(label, NOW - dt.timedelta(minutes=minutes), operation, outcome, tokens_in, tokens_out, chat)
    if dashboard:
        config = dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, **dashboard))
    return config


def secrets_of(config) -> list[str]:
    return [key.secret for key in config.keys]


LABELS = [label for label, *_rest in PANEL_KEYS]
