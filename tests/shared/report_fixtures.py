"""Fixed report fixtures: the 18 keys of the README's `.stats` panel, at a fixed time."""
from __future__ import annotations

import datetime as dt
import json

from shared.core.keys import sync_keys
from shared.core.models import ApiKey, Heartbeat, KeyRanking
from shared.core.windows import WINDOW, window_start
from tests.conftest import make_config

NOW = dt.datetime(2026, 3, 10, 12, 0, 0)
LIMIT = 2_500_000

# label, used, calls, rate hits, errors, resets in (h, m), lifetime tokens, extra row values
PANEL_KEYS = [
    ("main", 45_231, 156, 0, 0, (18, 45), 1_245_231, {}),
    ("backup", 2_123_456, 2_456, 3, 1, (12, 30), 2_123_456, {}),
    ("ops&dev", 2_500_000, 3_789, 0, 0, (6, 15), 9_800_000, {}),
    ("burst", 1_000_000, 812, 14, 0, (3, 5), 1_000_000, {"cooldown_until": NOW + dt.timedelta(seconds=45)}),
    ("old-trial", 0, 1, 0, 1, (23, 59), 10_000, {"invalid": True, "invalid_reason": "401 <invalid_api_key>"}),
    ("spare", 0, 0, 0, 0, (9, 0), 0, {"disabled": True}),
] + [(f"pool-{n:02d}", 0 if n % 3 else 150_000 + n * 1_000, 0 if n % 3 else n * 10, 0, 0, (n, 2 * n), 3_000_000 + n,
      {}) for n in range(7, 19)]


def panel_config(url: str):
    keys = [{"label": label, "api_key": f"sk-panel-{i:02d}-" + "z" * 24, "daily_token_limit": LIMIT,
             "enabled": not extra.get("disabled", False)}
            for i, (label, *_rest, extra) in enumerate(PANEL_KEYS)]
    return make_config(keys, url=url)


def build_panel(url: str):
    """Sync the 18 keys, then give each its state as of NOW. Returns the config."""
    config = panel_config(url)
    ring = sync_keys(config)
    by_label = {ring.get(i).label: i for i in ring.ids()}
    for label, used, calls, rate_hits, errors, (h, m), lifetime, extra in PANEL_KEYS:
        anchor = NOW + dt.timedelta(hours=h, minutes=m) - WINDOW
        extra = {k: v for k, v in extra.items() if k != "disabled"}
        (ApiKey.update(window_anchor=anchor, window_start=window_start(anchor, NOW), used_today=used,
                       calls_today=calls, rate_hits_today=rate_hits, errors_today=errors,
                       cost_today_nanousd=used * 150, total_tokens=lifetime, total_calls=calls * 3,
                       total_cost_nanousd=lifetime * 150, **extra)
         .where(ApiKey.id == by_label[label]).execute())
    KeyRanking.create(generation=41, key_ids=json.dumps([by_label["backup"], by_label["main"]]), policy="sticky",
                      published_at=NOW - dt.timedelta(seconds=2), published_by="w1")
    KeyRanking.create(generation=42, key_ids=json.dumps([by_label["main"], by_label["pool-07"]]), policy="sticky",
                      published_at=NOW - dt.timedelta(seconds=1), published_by="w1")
    for kind, name, seconds in (("worker", "w1", 3), ("bot", "main", 12), ("bot", "alt<b>", 7_500)):
        seen = NOW - dt.timedelta(seconds=seconds)
        Heartbeat.create(kind=kind, name=name, host="h", pid=1, started_at=seen - dt.timedelta(hours=1),
                         last_seen=seen)
    return config


# --- a fixed history of calls, for the renderers' goldens ---------------------------------------

PRICES = {"gpt-4o-mini": {"input_per_mtok": 0.15, "cached_input_per_mtok": 0.075, "output_per_mtok": 0.60},
          "gpt-4o": {"input_per_mtok": 2.5, "cached_input_per_mtok": 1.25, "output_per_mtok": 10.0}}
ANCHOR = NOW - dt.timedelta(hours=5)    # every history key's window started 5 hours before NOW


def history_config(url: str, **sections):
    keys = [{"label": f"k{i}", "api_key": f"sk-history-{i}-" + "y" * 24 + f"{i}a{i}b", "daily_token_limit": 1_000_000}
            for i in (1, 2, 3)]
    return make_config(keys, url=url, pricing={"overrides": PRICES}, **sections)


def record_history(config, calls: int = 60, seed: int = 7, days: int = 5):
    """Sync 3 keys anchored at ANCHOR and record `calls` deterministic calls of the last `days` days."""
    import random

    from shared.core.accounting import CallRecord, Outcome, record_call
    from shared.core.pricing import Pricer

    ring = sync_keys(config)
    ApiKey.update(window_anchor=ANCHOR).execute()
    pricer = Pricer(config.pricing)
    rnd = random.Random(seed)
    outcomes = [Outcome.OK] * 7 + [Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.TIMEOUT]
    for i in range(calls):
        outcome = rnd.choice(outcomes)
        ok = outcome is Outcome.OK
        at = NOW - dt.timedelta(seconds=rnd.randint(0, days * 86_400 - 1))
        record_call(CallRecord(
            key_id=rnd.choice(ring.ids()), bot=rnd.choice(["main", "alt"]),
            operation=rnd.choice(["autoreply", "summary"]), model=rnd.choice(["gpt-4o-mini", "gpt-4o"]),
            outcome=outcome, input_tokens=rnd.randint(50, 4_000) if ok else 0,
            cached_tokens=rnd.choice([0, 0, 32]) if ok else 0, output_tokens=rnd.randint(1, 600) if ok else 0,
            duration_ms=rnd.randint(80, 4_000), error_code="" if ok else "e" + outcome.value[:3],
            chat_id=rnd.choice([None, 1001, 1002, 1003]), at=at, call_id=f"h{i:04d}"),
            anchor=ANCHOR, pricer=pricer)
    return ring
