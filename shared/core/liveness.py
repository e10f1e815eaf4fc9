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


STOPPED = "stopped_at"      # in a heartbeat's info: the process stopped cleanly (the next beat clears it)


def sign_off(kind: str, name: str, *, forget: bool = False, now: dt.datetime | None = None) -> None:
    """A clean stop: the row says "stopped" instead of looking alive (or, later, dead).

    `forget` deletes the row instead: for a process whose name is only its host:pid (a worker
    run with `--once` or without a name), which no later run will ever beat again."""
    now = now or utcnow()
    row = Heartbeat.select().where((Heartbeat.kind == kind) & (Heartbeat.name == name)).first()
    if row is None:
        return
    if forget:
        Heartbeat.delete().where(Heartbeat.id == row.id).execute()
        return
    info = {**_info(row), STOPPED: now.isoformat()}
    Heartbeat.update(info=json.dumps(info, sort_keys=True), last_seen=now).where(Heartbeat.id == row.id).execute()


def is_stopped(heartbeat: Heartbeat) -> bool:
    return STOPPED in _info(heartbeat)


def _info(heartbeat: Heartbeat) -> dict:
    try:
        info = json.loads(heartbeat.info or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def heartbeats(kind: str | None = None) -> list[Heartbeat]:
    query = Heartbeat.select().order_by(Heartbeat.kind, Heartbeat.name)
    if kind:
        query = query.where(Heartbeat.kind == kind)
    return list(query)


def is_alive(heartbeat: Heartbeat, now: dt.datetime, threshold: dt.timedelta) -> bool:
    return not is_stopped(heartbeat) and now - heartbeat.last_seen <= threshold
