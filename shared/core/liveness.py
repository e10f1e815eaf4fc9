"""Liveness of every process: a row per (kind, name), upserted on each beat."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket

from shared.core.db import conflict_target, database
from shared.core.models import Heartbeat, utcnow


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


def is_alive(heartbeat: Heartbeat, now: dt.datetime, threshold: dt.timedelta) -> bool:
    return now - heartbeat.last_seen <= threshold
