"""The Jinja2 environment of the dashboard: autoescaped templates and the number formats.

The formats match `static/dashboard.js`, which redraws the same fields after each refresh.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2

from shared.core.pricing import format_usd
from shared.core.windows import format_duration

TEMPLATES = Path(__file__).resolve().parent / "templates"

STATUS_CLASS = {"FRESH": "ok", "ACTIVE": "ok", "LOW": "warn", "EXHAUSTED": "bad", "RATE_LIMITED": "cool",
                "INVALID": "bad", "DISABLED": "off"}
OUTCOME_CLASS = {"ok": "ok", "rate_limited": "warn", "interrupted": "off"}   # any other outcome: "bad"


def tokens(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def usd(nano: int | None) -> str:
    return "–" if nano is None else format_usd(nano)


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def duration(seconds: int | None) -> str:
    return "–" if seconds is None else format_duration(dt.timedelta(seconds=seconds))


def ago(seconds: int | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds}s" if seconds < 60 else duration(seconds)


def clock(iso: str | None) -> str:
    """'2026-03-10T11:58:03Z' -> '11:58:03'; None -> 'never'."""
    return "never" if not iso else iso[11:19]


def when(iso: str | None) -> str:
    """'2026-03-10T11:58:03Z' -> '03-10 11:58'; None -> 'never'."""
    return "never" if not iso else f"{iso[5:10]} {iso[11:16]}"


def status_class(status: str) -> str:
    return STATUS_CLASS.get(status, "off")


def outcome_class(outcome: str) -> str:
    return OUTCOME_CLASS.get(outcome, "bad")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(tokens=tokens, usd=usd, percent=percent, duration=duration, ago=ago, clock=clock, when=when,
                       status_class=status_class, outcome_class=outcome_class)
    return env
