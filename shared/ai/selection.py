"""Which key a call uses (docs/design.md invariant 4).

The worker publishes a ranking of eligible keys (`KeyRanking`, newest generation wins);
bots follow it. Before a key is used its row is read again and its status recomputed,
so a key that turned EXHAUSTED, INVALID, DISABLED or cooling since the ranking was
published is never sent a request.

When no worker is alive (shared/core/liveness.py, docs/design.md invariant 13) or
none has published yet, selection degrades to this process's own view: eligible
keys in config order. A warning is logged once when that starts, a note when it ends.
The worker publishes only when the ranking changes, so its age says nothing; the
worker's heartbeat does.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import peewee as pw

from shared.core.config import Config
from shared.core.db import database
from shared.core.key_rows import KeyRow, key_row, key_rows_statement
from shared.core.keys import HeldKey, KeyRing
from shared.core.liveness import ALIVE_WITHIN, recently_seen
from shared.core.models import ApiKey, Heartbeat, KeyRanking
from shared.core.prepared import Prepared, Statements, slot
from shared.core.status import frees_up_at, is_eligible, window_usage

log = logging.getLogger("tokenpool.selection")

WORKER_KIND = "worker"


@dataclass(frozen=True)
class Pick:
    """The key to use next, or None with when the earliest held key frees up."""
    key: HeldKey | None
    degraded: bool = False
    generation: int | None = None
    frees_up_at: dt.datetime | None = None     # only when key is None; None: no key ever will by itself
    reason: str = ""
    left: int | None = None                    # the key's tokens left this window, as its row said


def ranked_order(key_ids_json: str) -> list[int]:
    """The ids of a published ranking; an unreadable one is an empty ranking."""
    try:
        ids = json.loads(key_ids_json)
    except (TypeError, ValueError):
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def order_candidates(rows: list, ranking: list[int] | None, exclude: AbstractSet[int], now: dt.datetime,
                     low_threshold: int) -> list:
    """Rows usable now, best first: in ranking order, or config order when ranking is None."""
    if ranking is None:
        ordered = sorted(rows, key=lambda r: (r.position, r.id))
    else:
        by_id = {r.id: r for r in rows}
        ordered = [by_id[i] for i in dict.fromkeys(ranking) if i in by_id]
    return [r for r in ordered if r.id not in exclude and is_eligible(r, now, low_threshold)]


def earliest_free(rows: list, now: dt.datetime) -> dt.datetime | None:
    """When the first of `rows` can be used again (None when only a person can fix them all)."""
    times = [t for t in (frees_up_at(r, now) for r in rows) if t is not None and t > now]
    return min(times) if times else None


class Selector:
    """Picks keys for one process. Blocking: run it on the accounting thread."""

    def __init__(self, config: Config, keyring: KeyRing):
        self.keyring = keyring
        self.low_threshold = config.pool.low_threshold
        self.degraded: bool | None = None      # None until the first pick
        self._statements = Statements()
        self._parsed: tuple[int, list[int]] | None = None     # the last ranking read, by generation

    def published_ranking(self, now: dt.datetime, db: pw.Database | None = None) -> tuple[int | None, list[int] | None]:
        """(generation, ids) of the newest ranking, or (None, None) when absent or no worker is alive."""
        db = database.obj if db is None else db
        rows = self._statements.get(db, "ranking", _ranking_statement).rows(db)
        if not rows:
            return None, None
        generation, key_ids, seen = rows[0]
        if not recently_seen(seen, now):
            return None, None
        if self._parsed is None or self._parsed[0] != generation:
            self._parsed = (generation, ranked_order(key_ids))
        return generation, self._parsed[1]

    def held_rows(self, db: pw.Database | None = None) -> list[KeyRow]:
        ids = tuple(sorted(self.keyring.ids()))
        if not ids:
            return []
        db = database.obj if db is None else db
        statement = self._statements.get(db, ("rows", ids), lambda: key_rows_statement(ApiKey.id.in_(list(ids))))
        return [key_row(raw) for raw in statement.raw_rows(db)]

    def pick(self, now: dt.datetime, exclude: AbstractSet[int] = frozenset(), model: str | None = None,
             db: pw.Database | None = None) -> Pick:
        """The first usable key not in `exclude` that serves `model` (None: any model), read
        on `db` (default: this thread's connection). One attempt: the caller's
        DatabaseExecutor retries transient errors."""
        if not len(self.keyring):
            return Pick(None, reason="this process holds no API keys (add [[keys]] to the config)")
        generation, ranking = self.published_ranking(now, db)
        self._note_mode(degraded=ranking is None)
        rows = self.held_rows(db)
        if model is not None:
            rows = [r for r in rows if (held := self.keyring.get(r.id)) is not None and held.serves(model)]
            if not rows:
                return Pick(None, degraded=ranking is None, generation=generation,
                            reason=f"no key of this process serves the model {model!r} (see `models` of [[keys]])")
        usable = order_candidates(rows, ranking, exclude, now, self.low_threshold)
        if usable:
            return Pick(self.keyring.get(usable[0].id), degraded=ranking is None, generation=generation,
                        left=window_usage(usable[0], now).left)
        return Pick(None, degraded=ranking is None, generation=generation, frees_up_at=earliest_free(rows, now),
                    reason=_why_none(rows, ranking, exclude, now, self.low_threshold))

    def still_usable(self, key_id: int, now: dt.datetime) -> bool:
        """Re-check one key's row right before sending it another request."""
        statement = self._statements.get(database.obj, "row", lambda: key_rows_statement(ApiKey.id == slot("id")))
        rows = statement.raw_rows(database.obj, {"id": key_id})
        return bool(rows) and is_eligible(key_row(rows[0]), now, self.low_threshold)

    def _note_mode(self, degraded: bool) -> None:
        if degraded and self.degraded is not True:
            log.warning("no key ranking from a live worker (no worker heartbeat within %d s, or nothing "
                        "published yet): choosing keys by status in config order",
                        ALIVE_WITHIN.total_seconds())
        elif not degraded and self.degraded is True:
            log.info("following the worker's key ranking again")
        self.degraded = degraded


def _why_none(rows, ranking, exclude, now, low_threshold) -> str:
    if all(r.id in exclude for r in rows):
        return "every key failed for this request"
    if ranking is not None and any(is_eligible(r, now, low_threshold) and r.id not in exclude for r in rows):
        return "the worker's ranking lists none of this process's usable keys"
    return "every key is exhausted, cooling down, invalid or disabled"


def _ranking_statement() -> Prepared:
    """The newest ranking and, beside it, when a worker last beat (one round trip)."""
    seen = (Heartbeat.select(pw.fn.MAX(Heartbeat.last_seen)).where(Heartbeat.kind == WORKER_KIND))
    query = (KeyRanking.select(KeyRanking.generation, KeyRanking.key_ids, seen.alias("seen"))
             .order_by(KeyRanking.generation.desc()).limit(1))
    return Prepared(query, (KeyRanking.generation, KeyRanking.key_ids, Heartbeat.last_seen))
