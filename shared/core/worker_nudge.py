"""Waking the worker early: after a failure changes a key's state, a bot calls `notify_worker`
so that statuses and the ranking catch up now rather than at the next tick.

PostgreSQL delivers a NOTIFY on `WAKE_CHANNEL` to the listening worker at once. Elsewhere
the call bumps a marker row that the worker polls every fraction of a second.
"""
from __future__ import annotations

import datetime as dt

from shared.core import db
from shared.core.models import Setting, utcnow

WAKE_CHANNEL = "tokenpool_wake"
_SCOPE, _NAME = "worker", "wake"


def notify_worker(now: dt.datetime | None = None) -> None:
    """Ask the worker to tick now. Cheap; safe to call from any process, in or out of a transaction."""
    if db.notify(WAKE_CHANNEL):
        return
    now = now or utcnow()
    (Setting.insert(scope=_SCOPE, name=_NAME, value=now.isoformat(), updated_at=now)
     .on_conflict(update={Setting.value: now.isoformat(), Setting.updated_at: now},
                  **db.conflict_target(db.database.obj, [Setting.scope, Setting.name]))
     .execute())


def wake_marker() -> str | None:
    """The marker `notify_worker` bumps where there is no NOTIFY; a change means "wake up"."""
    return (Setting.select(Setting.value)
            .where((Setting.scope == _SCOPE) & (Setting.name == _NAME)).scalar())
