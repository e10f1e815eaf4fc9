"""Liveness of every process: a row per (kind, name), upserted on each beat, and the one
rule that says whether a process is alive (docs/design.md invariant 13).

A process is alive while its last heartbeat is at most `ALIVE_WITHIN` old and it has not
signed off. Bots beat every 15 s and the worker on every tick (2 s by default), so a minute
is four missed beats of a bot: long enough for a slow database, short enough for a report to
tell the truth. Reports, `doctor`, the worker's count of live bots and the bots' trust in
the worker's ranking all use this rule and nothing else (selection reads only the newest
worker beat, in the same query as the ranking, so it applies the time part: a cleanly
stopped worker's last ranking is followed until it ages out, every key still re-checked).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket

from shared.core.db import conflict_target, database
from shared.core.models import Heartbeat, utcnow

ALIVE_WITHIN = dt.timedelta(seconds=60)


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


def recently_seen(last_seen: dt.datetime | None, now: dt.datetime) -> bool:
    """The time part of the rule: a beat at `last_seen` (None: never) is recent enough at `now`."""
    return last_seen is not None and now - last_seen <= ALIVE_WITHIN


def is_alive(heartbeat: Heartbeat, now: dt.datetime) -> bool:
    """The rule: beat recently, and not signed off since."""
    return not is_stopped(heartbeat) and recently_seen(heartbeat.last_seen, now)


def count_alive(kind: str, now: dt.datetime) -> int:
    """How many processes of `kind` ("worker" or "bot") are alive at `now`."""
    return sum(1 for h in heartbeats(kind) if is_alive(h, now))
