"""Report queries: plain values out of the database, for every renderer."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .models import ApiKey
from .status import Status, WindowUsage, key_status, window_usage


@dataclass(frozen=True)
class KeyView:
    """One key as every report shows it."""
    id: int
    position: int
    label: str
    masked: str
    status: Status
    usage: WindowUsage
    total_tokens: int
    last_used_at: dt.datetime | None
    last_error: str
    in_config: bool


def key_views(now: dt.datetime, low_threshold: int, *, include_removed: bool = False) -> list[KeyView]:
    query = ApiKey.select().order_by(ApiKey.position, ApiKey.id)
    if not include_removed:
        query = query.where(ApiKey.in_config == True)  # noqa: E712
    return [key_view(row, now, low_threshold) for row in query]


def key_view(row: ApiKey, now: dt.datetime, low_threshold: int) -> KeyView:
    return KeyView(id=row.id, position=row.position, label=row.label, masked=row.masked,
                   status=key_status(row, now, low_threshold), usage=window_usage(row, now),
                   total_tokens=row.total_tokens, last_used_at=row.last_used_at,
                   last_error=row.last_error, in_config=row.in_config)
