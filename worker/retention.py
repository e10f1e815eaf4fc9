"""Retention: per-call events older than `retention_days` are deleted; daily rollups stay.

Every event's rollup is written in the same transaction as the event (shared.core.accounting),
so an event old enough to prune is already counted in the rollups that outlive it. Deletes
go in small batches, each its own short transaction, so bots recording calls never wait long.
"""
from __future__ import annotations

import datetime as dt

from shared.core.db import write_transaction
from shared.core.models import UsageEvent
from shared.core.query_rows import tuple_rows

BATCH = 2_000


def prune_events(now: dt.datetime, retention_days: int, *, max_batches: int = 10) -> tuple[int, bool]:
    """Delete up to `max_batches` batches of expired events. Returns (deleted, more_left)."""
    cutoff = now - dt.timedelta(days=retention_days)
    deleted = 0
    for _ in range(max_batches):
        # Ids first, then delete by id: MySQL cannot LIMIT a subquery inside IN.
        ids = [i for (i,) in tuple_rows(UsageEvent.select(UsageEvent.id).where(UsageEvent.at < cutoff)
                                        .order_by(UsageEvent.id).limit(BATCH))]
        if not ids:
            return deleted, False
        with write_transaction():
            deleted += UsageEvent.delete().where(UsageEvent.id.in_(ids)).execute()
        if len(ids) < BATCH:
            return deleted, False
    return deleted, True
