"""Exports: the calls (or daily rollups) of a range of UTC days as one CSV or JSON document.

Calls come from the events, so days older than the worker's retention have none; the
"daily" kind comes from the rollups, which are kept forever.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import TextIO

from shared.reports.queries import ReportError, calls_between, rollups_between, utc_day
from shared.reports.render_json_csv import write_csv, write_json

FORMATS = {"csv": write_csv, "json": write_json}
KINDS = ("calls", "daily")


def export(out: TextIO, fmt: str, kind: str, start: dt.date, end: dt.date) -> int:
    """Write the UTC days start..end (both included) to `out`; returns the number of rows."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown export format '{fmt}' (use csv or json)")
    if kind not in KINDS:
        raise ReportError(f"unknown export kind '{kind}' (use calls or daily)")
    if end < start:
        raise ReportError(f"the export ends ({end}) before it starts ({start})")
    if kind == "calls":
        rows = calls_between(dt.datetime.combine(start, dt.time()),
                             dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    else:
        rows = rollups_between(start, end)
    return FORMATS[fmt](rows, kind, out)


def last_days(now: dt.datetime, days: int) -> tuple[dt.date, dt.date]:
    end = utc_day(now)
    return end - dt.timedelta(days=days - 1), end


@dataclass(frozen=True)
class Document:
    filename: str
    data: bytes          # UTF-8
    rows: int
    start: dt.date
    end: dt.date


def export_document(now: dt.datetime, fmt: str, days: int = 1, kind: str = "calls") -> Document:
    """The last `days` UTC days as one file, for sending as a document."""
    start, end = last_days(now, days)
    buffer = io.StringIO()
    rows = export(buffer, fmt, kind, start, end)
    name = f"tokenpool-{kind}-{start.isoformat()}" + (f"-to-{end.isoformat()}" if end != start else "")
    return Document(f"{name}.{fmt}", buffer.getvalue().encode("utf-8"), rows, start, end)
