"""Arguments of the report commands as people type them in Telegram (`.usage 30 by model`),
parsed into plain values; anything else raises ReportError saying what is wrong."""
from __future__ import annotations

from dataclasses import dataclass

from shared.core.numbers import whole_number
from shared.reports.queries import MAX_DAYS, MAX_RECENT, ReportError, grouping

EXPORT_FORMATS = ("csv", "json")
MAX_EXPORT_DAYS = 92        # a document, sent through Telegram; the CLI exports any range
MAX_CHART_DAYS = 366


def _number(word: str, low: int, high: int, what: str) -> int:
    value = whole_number(word, low, high)
    if value is None:
        raise ReportError(f"{what} must be a whole number from {low} to {high}, not '{word[:20]}'")
    return value


@dataclass(frozen=True)
class UsageArgs:
    days: int = 30
    by: str = "day"


def parse_usage(words: list[str]) -> UsageArgs:
    """`[days] [by <grouping>]` or `[days] [<grouping>]`, in any order."""
    days, by, rest = None, None, list(words)
    while rest:
        word = rest.pop(0)
        if word[:1].isdigit() and days is None:     # '²' too: it gets the whole-number message
            days = _number(word, 1, MAX_DAYS, "days")
        elif word.lower() == "by" and rest and by is None:
            by = rest.pop(0)
        elif by is None and not word[:1].isdigit():
            by = word
        else:
            raise ReportError(f"unexpected '{word}'")
    return UsageArgs(days=days or UsageArgs.days, by=grouping(by or UsageArgs.by))


def parse_recent(words: list[str]) -> int:
    if len(words) > 1:
        raise ReportError(f"unexpected '{words[1]}'")
    return _number(words[0], 1, MAX_RECENT, "n") if words else 20


@dataclass(frozen=True)
class ExportArgs:
    format: str
    days: int = 1


def parse_export(words: list[str]) -> ExportArgs:
    if not words or words[0].lower() not in EXPORT_FORMATS:
        raise ReportError("say which format: csv or json")
    if len(words) > 2:
        raise ReportError(f"unexpected '{words[2]}'")
    days = _number(words[1], 1, MAX_EXPORT_DAYS, "days") if len(words) == 2 else 1
    return ExportArgs(format=words[0].lower(), days=days)


def parse_chart(words: list[str]) -> int:
    if len(words) > 1:
        raise ReportError(f"unexpected '{words[1]}'")
    return _number(words[0], 2, MAX_CHART_DAYS, "days") if words else 30
