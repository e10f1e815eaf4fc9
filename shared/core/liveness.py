"""Liveness of every process: a row per (kind, name), upserted on each beat, and the one
rule that says whether a process is alive (docs/design.md invariant 13).

A process is alive while its last heartbeat is at most `ALIVE_WITHIN` old. Bots beat every
15 s and the worker on every tick (2 s by default), so a minute is four missed beats of a
bot: long enough for a slow database, short enough for a report to tell the truth. Reports,
`doctor`, the worker's count of live bots and the bots' trust in the worker's ranking all
use this rule and nothing else.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket

from shared.core.db import conflict_target, database
from shared.core.models import Heartbeat, utcnow

ALIVE_WITHIN = dt.timedelta(seconds=60)


def is_alive(last_seen: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a process that last beat at `last_seen` (None: never) counts as alive at `now`."""
    return last_seen is not None and now - last_seen <= ALIVE_WITHIN


def beat(kind: str, name: str, info: dict | None = None, *, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    values = {Heartbeat.kind: kind, Heartbeat.name: name, Heartbeat.host: socket.gethostname()[:128],
              Heartbeat.pid: os.getpid(), Heartbeat.started_at: now, Heartbeat.last_seen: now,
              Heartbeat.info: json.dumps(info or {}, sort_keys=True)}
    (Heartbeat.insert(values)
     .on_conflict(update={Heartbeat.last_seen: now, Heartbeat.pid: os.getpid(),
                          Heartbeat.host: values[Heartbeat.host], Heartbeat.info: values[Heartbeat.info]},
                  **conflict_target(database.obj, [Heartbeat.kind, Heartbeat.name]))
     .execute())


def heartbeats(kind: str | None = None) -> list[Heartbeat]:
    query = Heartbeat.select().order_by(Heartbeat.kind, Heartbeat.name)
    if kind:
        query = query.where(Heartbeat.kind == kind)
    return list(query)


def count_alive(kind: str, now: dt.datetime) -> int:
    """How many processes of `kind` ("worker" or "bot") are alive at `now`."""
    return sum(1 for h in heartbeats(kind) if is_alive(h.last_seen, now))
