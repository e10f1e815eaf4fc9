"""Arguments of the report commands as people type them (`.usage 30 by model`), parsed into
plain values; anything else raises ReportError with the command's usage line."""
from __future__ import annotations

from dataclasses import dataclass

from .reports import MAX_DAYS, MAX_RECENT, ReportError, grouping

USAGE_LINES = {
    "usage": "usage [days] [by day|key|model|op|bot|chat]",
    "recent": "recent [n]",
    "export": "export csv|json [days]",
    "chart": "chart [days]",
    "budget": "budget",
}
EXPORT_FORMATS = ("csv", "json")


def _fail(command: str, problem: str):
    raise ReportError(f"{problem}\nusage: {USAGE_LINES[command]}")


def _number(command: str, word: str, low: int, high: int, what: str) -> int:
    if not word.isdigit() or not low <= int(word) <= high:
        _fail(command, f"{what} must be a whole number from {low} to {high}, not '{word}'")
    return int(word)


@dataclass(frozen=True)
class UsageArgs:
    days: int = 30
    by: str = "day"


def parse_usage(words: list[str]) -> UsageArgs:
    """`[days] [by <grouping>]` or `[days] [<grouping>]`, in any order."""
    days, by, rest = None, None, list(words)
    while rest:
        word = rest.pop(0)
        if word.isdigit() and days is None:
            days = _number("usage", word, 1, MAX_DAYS, "days")
        elif word.lower() == "by" and rest and by is None:
            by = rest.pop(0)
        elif by is None and not word.isdigit():
            by = word
        else:
            _fail("usage", f"unexpected '{word}'")
    try:
        return UsageArgs(days=days or UsageArgs.days, by=grouping(by or UsageArgs.by))
    except ReportError as exc:
        _fail("usage", str(exc))


def parse_recent(words: list[str]) -> int:
    if len(words) > 1:
        _fail("recent", f"unexpected '{words[1]}'")
    return _number("recent", words[0], 1, MAX_RECENT, "n") if words else 20


@dataclass(frozen=True)
class ExportArgs:
    format: str
    days: int = 1


def parse_export(words: list[str]) -> ExportArgs:
    if not words or words[0].lower() not in EXPORT_FORMATS:
        _fail("export", "say which format: csv or json")
    if len(words) > 2:
        _fail("export", f"unexpected '{words[2]}'")
    days = _number("export", words[1], 1, MAX_DAYS, "days") if len(words) == 2 else 1
    return ExportArgs(format=words[0].lower(), days=days)


def parse_chart(words: list[str]) -> int:
    if len(words) > 1:
        _fail("chart", f"unexpected '{words[1]}'")
    return _number("chart", words[0], 2, 366, "days") if words else 30
